//! What a plan may not carry, whoever wrote it: names that would reach a terminal as
//! control sequences, monitors on other hosts without the plan saying so, and values
//! whose echo in an error would show a secret or flood the screen.

use plans::{Diagnostic, Plan, PlanErrors};

mod common;
use common::BASE;

fn load(text: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", text)
}

/// The mistakes of a plan that must be refused.
fn refused(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.diagnostics,
    }
}

/// The one mistake about `key`.
fn mistake(text: &str, key: &str) -> Diagnostic {
    let all = refused(text);
    all.iter()
        .find(|d| d.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("no mistake about {key}: {all:?}"))
}

#[test]
fn a_control_character_in_the_vm_name_is_refused_with_where_it_is() {
    let text = BASE.replace("db-01", "db\\u0000-01");
    let d = mistake(&text, "vm.name");
    assert_eq!(
        d.message,
        "contains the control character \"\\u0000\" at character 3"
    );
}

#[test]
fn terminal_escapes_and_bidi_overrides_in_a_device_id_are_refused() {
    for id in ["gpu\\u001B[2J", "gpu\\u202Eevil", "gpu\\t0", "gpu\\u0085"] {
        let text = format!("{BASE}[[devices]]\nid = \"{id}\"\n");
        let d = mistake(&text, "devices[0].id");
        assert!(
            d.message.starts_with("contains the control character"),
            "{id}: {d:?}"
        );
    }
}

#[test]
fn printable_unicode_names_are_fine() {
    let text = BASE.replace("db-01", "db-01 (東京, é)");
    assert!(load(&text).is_ok());
}

#[test]
fn a_monitor_on_another_host_is_refused_by_default() {
    let text = BASE.replace("unix:/run/dst.qmp", "tcp:192.0.2.10:4444");
    let d = mistake(&text, "destination.qmp");
    assert!(d.message.contains("no authentication"), "{d:?}");
    assert!(d.hint.unwrap_or_default().contains("remote_qmp = true"));
}

#[test]
fn security_remote_qmp_lets_a_plan_reach_a_monitor_on_another_host() {
    let text = BASE.replace("unix:/run/dst.qmp", "tcp:192.0.2.10:4444");
    let plan = load(&format!("{text}[security]\nremote_qmp = true\n")).unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.security.remote_qmp);
    assert!(plan.destination.endpoint.qmp().is_some_and(|q| q.is_remote()));
}

#[test]
fn remote_qmp_is_off_unless_written() {
    let plan = load(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert!(!plan.security.remote_qmp);
    let text = BASE.replace("unix:/run/src.qmp", "tcp:192.0.2.10:4444");
    refused(&format!("{text}[security]\nremote_qmp = false\n"));
}

#[test]
fn loopback_monitors_need_no_opt_in() {
    for address in ["tcp:127.0.0.1:4444", "tcp:localhost:4444", "tcp:[::1]:4444"] {
        let text = BASE.replace("unix:/run/dst.qmp", address);
        assert!(load(&text).is_ok(), "{address}");
    }
}

#[test]
fn a_monitor_named_by_host_name_is_refused_even_with_the_opt_in() {
    let text = BASE.replace("unix:/run/dst.qmp", "tcp:qemu-b.example:4444");
    let d = mistake(
        &format!("{text}[security]\nremote_qmp = true\n"),
        "destination.qmp",
    );
    assert!(d.message.contains("takes an IP address"), "{d:?}");
}

#[test]
fn a_port_above_65535_says_what_a_port_may_be() {
    let text = BASE.replace("49152", "99999");
    let d = mistake(&text, "destination.listen");
    assert_eq!(d.message, "port 99999 is out of range: the port must be 1–65535");
    let text = BASE.replace("unix:/run/src.qmp", "tcp:127.0.0.1:70000");
    let d = mistake(&text, "source.qmp");
    assert!(d.message.contains("the port must be 1–65535"), "{d:?}");
}

#[test]
fn a_password_in_a_refused_uri_is_masked_in_words_and_in_the_source_line() {
    let text = BASE.replace("tcp:127.0.0.1:49152", "tcp:admin:hunter2@10.0.0.2");
    let errors = load(&text).expect_err("refused");
    let shown = errors.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("admin:***@"), "{shown}");
    let json = serde_json::to_string(&errors.located()).expect("json");
    assert!(!json.contains("hunter2"), "{json}");
}

#[test]
fn a_secret_parameter_in_an_unsupported_uri_is_masked() {
    let text = BASE.replace(
        "tcp:127.0.0.1:49152",
        "qemu+tls://host/system?password=hunter2&mode=x",
    );
    let shown = load(&text).expect_err("refused").to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("password=***"), "{shown}");
}

#[test]
fn a_mistyped_secret_key_does_not_show_its_value() {
    let text = format!("{BASE}password = \"hunter2\"\n");
    let shown = load(&text).expect_err("refused").to_string();
    assert!(shown.contains("unknown key `password`"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_huge_value_is_quoted_in_part() {
    let host = "a".repeat(1_000_000);
    let text = format!("{BASE}[[devices]]\nid = \"gpu0\"\nhost = \"{host}\"\n");
    let errors = load(&text).expect_err("refused");
    let shown = errors.to_string();
    assert!(shown.len() < 2_000, "{} bytes shown", shown.len());
    assert!(shown.contains("(1000000 characters)"), "{shown}");
}

#[test]
fn a_huge_unknown_key_is_named_in_part() {
    let key = "k".repeat(100_000);
    let errors = load(&format!("{BASE}{key} = 1\n")).expect_err("refused");
    let d = &errors.diagnostics[0];
    assert!(d.key.len() < 200 && d.message.len() < 200, "{d:?}");
}

#[test]
fn thousands_of_mistakes_list_the_first_fifty_and_count_the_rest() {
    let keys: String = (0..5_000).map(|i| format!("k{i} = 1\n")).collect();
    let errors = load(&format!("{BASE}{keys}")).expect_err("refused");
    assert_eq!(errors.diagnostics.len(), 5_000);
    assert_eq!(errors.located().len(), plans::diagnostic::MAX_LISTED);
    let shown = errors.to_string();
    assert!(
        shown.contains("... and 4950 more"),
        "{}",
        &shown[shown.len() - 200..]
    );
    assert!(shown.len() < 30_000, "{} bytes shown", shown.len());
    assert!(errors.summary().contains("5000 mistake(s) (the first 50 listed)"));
}

#[test]
fn an_integer_of_a_million_digits_is_out_of_range_in_a_short_message() {
    let digits = "9".repeat(1_000_000);
    let text = format!("{BASE}[convergence]\nstall_passes = {digits}\n");
    let d = mistake(&text, "convergence.stall_passes");
    assert!(
        d.message.ends_with("is out of range") && d.message.len() < 200,
        "{}",
        d.message.len()
    );
}
