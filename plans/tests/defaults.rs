//! What a plan gets for the keys it leaves out: the same whether a table is left out or
//! written empty, and never a value that makes a plan invalid that is valid as written.

use plans::{defaults, Convergence, Limits, Migration, Plan, PlanErrors, Policy};
use serde_json::{json, Value};

mod common;
use common::BASE;

fn load(extra: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", &format!("{BASE}\n{extra}"))
}

fn valid(extra: &str) -> Plan {
    load(extra).unwrap_or_else(|e| panic!("{e}"))
}

/// The keys of the mistakes found in a plan; none for a valid one.
fn mistaken_keys(extra: &str) -> Vec<String> {
    match load(extra) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics.into_iter().map(|d| d.key).collect(),
    }
}

fn json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("serializes")
}

#[test]
fn a_table_left_out_reads_as_the_models_defaults() {
    let plan = valid("");
    assert_eq!(json(&plan.migration), json(Migration::default()));
    assert_eq!(json(&plan.limits), json(Limits::default()));
    assert_eq!(json(&plan.convergence), json(Convergence::default()));
    assert_eq!(json(&plan.policy), json(Policy::default()));
}

#[test]
fn a_table_written_empty_reads_as_one_left_out() {
    let empty = valid("[migration]\n[limits]\n[convergence]\n[policy]\n");
    assert_eq!(json(empty), json(valid("")));
}

#[test]
fn keys_left_out_take_the_values_in_defaults() {
    let plan = valid("[[devices]]\nid = \"gpu0\"\n");
    assert_eq!(
        plan.vm.allow_unlisted_devices,
        defaults::vm::ALLOW_UNLISTED_DEVICES
    );
    assert_eq!(plan.destination.resume, defaults::destination::RESUME);
    assert_eq!(plan.migration.postcopy, defaults::migration::POSTCOPY);
    assert_eq!(plan.devices[0].precopy, defaults::devices::PRECOPY);
    assert_eq!(plan.limits.downtime, defaults::limits::DOWNTIME);
    assert_eq!(plan.limits.saving_timeout, defaults::limits::SAVING_TIMEOUT);
    assert_eq!(plan.convergence.stall_passes, defaults::convergence::STALL_PASSES);
    assert_eq!(plan.policy.escalation, defaults::policy::ESCALATION);
}

#[test]
fn max_downtime_left_out_is_the_downtime_the_plan_starts_with() {
    let plan = valid("[limits]\ndowntime = \"2s\"\n");
    assert_eq!(json(&plan.limits)["max_downtime"], json("2s"));
}

#[test]
fn a_deadline_shorter_than_the_default_saving_timeout_caps_it() {
    let plan = valid("[limits]\ndeadline = \"20s\"\n");
    assert_eq!(
        json(&plan.limits),
        json!({
            "downtime": "300ms",
            "max_downtime": "300ms",
            "max_bandwidth": null,
            "deadline": "20s",
            "saving_timeout": "20s",
        })
    );
}

#[test]
fn a_saving_timeout_written_longer_than_the_deadline_is_still_refused() {
    let errors = match load("[limits]\ndeadline = \"20s\"\nsaving_timeout = \"30s\"\n") {
        Ok(_) => panic!("a saving timeout past the deadline was accepted"),
        Err(e) => e,
    };
    let found = errors.located();
    assert_eq!(found.len(), 1, "{errors}");
    let mistake = &found[0];
    assert_eq!(
        (mistake.line, mistake.column),
        (Some(13), Some(18)),
        "at the written value"
    );
    assert_eq!(mistake.diagnostic.key, "limits.saving_timeout");
    assert_eq!(mistake.diagnostic.message, "is longer than `deadline`");
}

#[test]
fn a_max_downtime_below_the_default_downtime_lowers_it() {
    let plan = valid("[limits]\nmax_downtime = \"100ms\"\n");
    assert_eq!(json(&plan.limits)["downtime"], json("100ms"));
}

#[test]
fn a_max_downtime_written_below_a_written_downtime_is_still_refused() {
    let keys = mistaken_keys("[limits]\ndowntime = \"2s\"\nmax_downtime = \"1s\"\n");
    assert_eq!(keys, ["limits.max_downtime"]);
}

#[test]
fn a_deadline_shorter_than_the_default_sample_interval_caps_it() {
    let plan = valid("[limits]\ndeadline = \"100ms\"\n");
    assert_eq!(json(&plan.convergence)["sample_interval"], json("100ms"));
}

#[test]
fn a_throttle_max_below_the_default_first_throttle_lowers_it() {
    let plan = valid("[policy]\nthrottle_max = 10\n");
    assert_eq!(plan.policy.throttle_initial, 10);
}

#[test]
fn a_throttle_max_written_below_a_written_first_throttle_is_still_refused() {
    let keys = mistaken_keys("[policy]\nthrottle_initial = 50\nthrottle_max = 40\n");
    assert_eq!(keys, ["policy.throttle_initial"]);
}
