//! VFIO devices over real QEMU: the migration itself is real (two QEMUs, the project's
//! guest); only the devices are modelled, by a QMP proxy in front of each QEMU that adds
//! them to the QOM tree and emits their `VFIO_MIGRATION` events in step with QEMU's own
//! migration events (`standins::devmodel`). Each test checks the exit code, where the VM
//! runs (asked through the proxies), and the device timelines in the JSON report.

mod common;

use std::time::Duration;

use common::devmodel::{device, modelled, Modelled, MIB};
use common::{check, row, run, status, ONE_AT_A_TIME};
use serde_json::Value;
use standins::vfio::{Fault, ModelDevice};

/// A plan for the modelled pair; `devices` is TOML for the [[devices]] tables.
fn plan(m: &Modelled, devices: &str, limits: &str, policy: &str) -> String {
    format!(
        "[vm]\nname = \"vfio\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\nlisten = \"tcp:127.0.0.1:{}\"\n{devices}\n[limits]\nmax_bandwidth = \"128MiB/s\"\n{limits}\n[convergence]\nstall_passes = 2\n[policy]\n{policy}\n",
        m.source.display(),
        m.destination.display(),
        m.pair.migration_port
    )
}

const GPU: &str = "[[devices]]\nid = \"gpu0\"\nprecopy = true\nstate_size = \"64MiB\"\n";
const NIC: &str = "[[devices]]\nid = \"nic0\"\nprecopy = false\nstate_size = \"8MiB\"\n";

fn states(report: &Value, id: &str) -> Vec<String> {
    report["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == id))
        .and_then(|d| d["timeline"].as_array())
        .map(|t| {
            t.iter()
                .filter_map(|c| c["state"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn error(report: &Value) -> String {
    report["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn two_devices_one_precopy_one_stop_copy_only_migrate_with_their_states_followed() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(
        256,
        50,
        vec![
            device("gpu0", true, 64, Fault::None),
            device("nic0", false, 8, Fault::None),
        ],
    );
    let plan = plan(
        &m,
        &format!("{GPU}{NIC}"),
        "max_downtime = \"3s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["running_on"], "destination");
    assert_eq!(states(&report, "gpu0"), vec!["pre-copy", "stop-copy", "stop"]);
    assert_eq!(states(&report, "nic0"), vec!["stop", "stop-copy", "stop"]);
    assert!(report["gate_opened_ms"].as_u64().is_some(), "the gate opened");
    assert_eq!(report["vfio_transferred_bytes"].as_u64(), Some(72 * MIB));
    assert_eq!(status(&m.destination), "running");
    assert_eq!(status(&m.source), "postmigrate");
}

#[test]
fn a_device_that_never_saves_aborts_after_the_saving_timeout_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(64, 0, vec![device("gpu0", true, 64, Fault::NeverSaving)]);
    // A capped link keeps the migration going long enough for the timeout to matter.
    let plan =
        plan(&m, GPU, "saving_timeout = \"2s\"", "escalation = [\"abort\"]").replace("128MiB/s", "16MiB/s");
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["reason"]["violation"]["kind"], "not_saving", "{report:#}");
    assert_eq!(report["reason"]["violation"]["device"], "gpu0");
    let e = error(&report);
    assert!(e.contains("did not reach its saving state"), "{e}");
    assert_eq!(status(&m.source), "running");
    assert_ne!(status(&m.destination), "running");
}

#[test]
fn a_device_error_in_precopy_fails_the_migration_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let fault = Fault::ErrorInPrecopy {
        after: Duration::from_millis(500),
    };
    let m = modelled(256, 50, vec![device("gpu0", true, 64, fault)]);
    let plan = plan(&m, GPU, "", "escalation = [\"abort\"]").replace("128MiB/s", "32MiB/s");
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["running_on"], "source");
    assert!(error(&report).contains("gpu0"), "{}", error(&report));
    assert_eq!(status(&m.source), "running");
}

#[test]
fn unplugging_a_device_mid_migration_aborts() {
    let _one = ONE_AT_A_TIME.lock();
    let fault = Fault::UnplugDuringMigration {
        after: Duration::from_millis(500),
    };
    let m = modelled(256, 50, vec![device("gpu0", true, 64, fault)]);
    let plan = plan(&m, GPU, "", "escalation = [\"abort\"]").replace("128MiB/s", "32MiB/s");
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["reason"]["violation"]["kind"], "unplugged", "{report:#}");
    assert_eq!(report["reason"]["violation"]["device"], "gpu0");
    assert_eq!(status(&m.source), "running");
}

#[test]
fn missing_events_abort_as_not_saving() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(64, 0, vec![device("gpu0", true, 64, Fault::EventsMissing)]);
    let plan =
        plan(&m, GPU, "saving_timeout = \"2s\"", "escalation = [\"abort\"]").replace("128MiB/s", "16MiB/s");
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["reason"]["violation"]["kind"], "not_saving", "{report:#}");
    assert!(
        report["reason"]["violation"]["seen_at_ms"].is_null(),
        "no event came"
    );
    assert!(
        error(&report).contains("no VFIO_MIGRATION event"),
        "{}",
        error(&report)
    );
    assert_eq!(status(&m.source), "running");
}

#[test]
fn a_slow_stop_copy_lengthens_the_measured_pause() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(
        64,
        0,
        vec![device(
            "gpu0",
            true,
            0,
            Fault::SlowStopCopy(Duration::from_millis(700)),
        )],
    );
    let plan = plan(
        &m,
        GPU.replace("64MiB", "0B").as_str(),
        "max_downtime = \"3s\"",
        "escalation = [\"abort\"]",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    let paused = report["paused_ms"].as_u64().expect("measured pause");
    assert!(
        paused >= 700,
        "the device's 700 ms stop-copy is part of the pause: {paused}ms"
    );
}

#[test]
fn no_decision_is_taken_before_the_last_device_is_saving() {
    let _one = ONE_AT_A_TIME.lock();
    // The workload cannot converge, so without the gate the policy would act at pass 3
    // (~3.7 s); the device only starts saving after 6 s.
    let slow = Fault::SlowToSaving(Duration::from_secs(6));
    let m = modelled(256, 200, vec![device("gpu0", true, 16, slow)]);
    let gpu = GPU.replace("64MiB", "16MiB");
    let plan = plan(
        &m,
        &gpu,
        "max_downtime = \"6s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    let saving = report["devices"][0]["saving_at_ms"]
        .as_u64()
        .expect("saving time");
    assert!(saving >= 6000, "{saving}");
    let acted = report["actions"][0]["at"].as_u64().expect("an action");
    assert!(
        acted > saving,
        "the action at {acted}ms came before the device was saving at {saving}ms"
    );
}

#[test]
fn switchover_is_refused_when_the_declared_device_state_would_exceed_the_pause_ceiling() {
    // QEMU does not know the modelled device's state, so it reaches pre-switchover; the
    // tool, which does, cancels there instead of pausing the guest for ~16 s.
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(64, 10, vec![device("gpu0", true, 2048, Fault::None)]);
    let gpu = GPU.replace("64MiB", "2GiB");
    let plan = plan(
        &m,
        &gpu,
        "max_downtime = \"5s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    let e = error(&report);
    assert!(e.contains("switching over now would pause the guest"), "{e}");
    assert_eq!(status(&m.source), "running");
}

#[test]
fn forcing_that_the_device_state_would_push_past_the_ceiling_is_skipped_and_the_policy_aborts() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(256, 200, vec![device("gpu0", true, 2048, Fault::None)]);
    let gpu = GPU.replace("64MiB", "2GiB");
    let plan = plan(
        &m,
        &gpu,
        "max_downtime = \"5s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 1, "{report:#}");
    let e = error(&report);
    assert!(
        e.contains("completing would need") && e.contains("more than limits.max_downtime (5000ms)"),
        "{e}"
    );
    // The skipped step is in `actions`, on the abort it led to.
    let actions = report["actions"].as_array().cloned().unwrap_or_default();
    assert_eq!(actions.len(), 1, "{report:#}");
    assert_eq!(actions[0]["action"], "abort");
    let skipped = actions[0]["skipped"][0].as_str().unwrap_or_default();
    assert!(skipped.starts_with("force-downtime: needs "), "{skipped}");
    assert_eq!(status(&m.source), "running");
}

#[test]
fn a_dirty_limit_that_works_is_not_aborted_while_syncs_burst_near_the_threshold() {
    // The demo's throttle scenario: 72 MiB of device state needs a 1 s downtime limit, so
    // with the RAM left near 128 MiB QEMU syncs again and again, a few hundred ms apart,
    // while kernel rates measured before the dirty limit held still arrive.
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(
        256,
        200,
        vec![
            device("gpu0", true, 64, Fault::None),
            device("nic0", false, 8, Fault::None),
        ],
    );
    if !m.pair.accel.dirty_ring {
        panic!(
            "this test needs KVM with the dirty ring; the rig chose {:?}",
            m.pair.accel
        );
    }
    let plan = plan(
        &m,
        &format!("{GPU}{NIC}"),
        "downtime = \"1s\"\nmax_downtime = \"5s\"\ndeadline = \"90s\"",
        "escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"",
    );
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    let actions = report["actions"].as_array().cloned().unwrap_or_default();
    assert!(
        (1..=2).contains(&actions.len()) && actions.iter().all(|a| a["action"] == "throttle"),
        "set once, corrected at most once: {report:#}"
    );
    let reason = actions[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("must fall to"), "{reason}");
    // Whatever was measured before the limit held was not what the policy judged.
    let at = actions[0]["at"].as_u64().unwrap_or(0);
    let stale = report["pass_history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["elapsed"].as_u64() > Some(at) && p["rate_since"].as_u64() < Some(at + 1000))
        .count();
    eprintln!("boundaries after the limit with a rate measured before it held: {stale}");
    assert_eq!(status(&m.destination), "running");
}

#[test]
fn a_device_without_migration_events_is_not_ready_and_the_property_is_named() {
    let _one = ONE_AT_A_TIME.lock();
    let mut quiet = device("gpu0", true, 64, Fault::None);
    quiet.migration_events = false;
    let m = modelled(64, 0, vec![quiet]);
    let (code, report) = run(m.pair.dir(), &plan(&m, GPU, "", "escalation = [\"abort\"]"));
    assert_eq!(code, 3, "{report:#}");
    assert!(
        error(&report).contains("migration-events=on"),
        "{}",
        error(&report)
    );
    assert_eq!(status(&m.source), "running");
}

#[test]
fn a_vfio_device_missing_from_the_plan_is_not_ready() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(
        64,
        0,
        vec![
            device("gpu0", true, 64, Fault::None),
            device("nic0", false, 8, Fault::None),
        ],
    );
    let (code, report) = run(m.pair.dir(), &plan(&m, GPU, "", "escalation = [\"abort\"]"));
    assert_eq!(code, 3, "{report:#}");
    assert!(
        error(&report).contains("nic0") && error(&report).contains("not listed"),
        "{}",
        error(&report)
    );
}

#[test]
fn check_names_each_device_that_is_missing_unfollowed_unlisted_or_of_unknown_size() {
    let _one = ONE_AT_A_TIME.lock();
    let silent = ModelDevice {
        migration_events: false,
        ..device("gpu1", true, 64, Fault::None)
    };
    let m = modelled(
        64,
        0,
        vec![
            device("gpu0", true, 64, Fault::None),
            silent,
            device("nic9", false, 8, Fault::None),
        ],
    );
    let devices = "[[devices]]\nid = \"gpu0\"\n[[devices]]\nid = \"gpu1\"\nstate_size = \"64MiB\"\n[[devices]]\nid = \"fpga0\"\n";
    let (code, answer) = check(m.pair.dir(), &plan(&m, devices, "", "escalation = [\"abort\"]"));
    assert_eq!(code, 3, "{answer:#}");
    for (id, status) in [
        ("device.gpu0.migration_events", "pass"),
        ("device.gpu0.enable_migration", "pass"),
        ("device.gpu0.destination", "pass"),
        ("device.gpu0.state_size", "warn"),
        ("device.gpu1.migration_events", "fail"),
        ("device.gpu1.state_size", "pass"),
        ("device.fpga0.present", "fail"),
        ("device.nic9.listed", "fail"),
        ("capability.switchover-ack", "pass"),
    ] {
        assert_eq!(row(&answer, id)["status"], status, "{id}: {}", row(&answer, id));
    }
    assert!(row(&answer, "device.gpu0.state_size")["finding"]
        .as_str()
        .is_some_and(|f| f.contains("100 GiB")));
}

/// A device property, as `qom-get` answers it through a side's proxy.
fn property(socket: &std::path::Path, path: &str, name: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let endpoint = backends::qmp::QmpEndpoint::Unix(socket.to_path_buf());
        let client = backends::qmp::QmpClient::connect(&endpoint, "test", Duration::from_secs(5))
            .await
            .expect("connect");
        client
            .execute_raw(
                "qom-get",
                Some(serde_json::json!({"path": path, "property": name})),
            )
            .await
            .expect("qom-get")
    })
}

#[test]
fn device_state_over_multifd_is_set_on_both_sides_reported_and_put_back() {
    let _one = ONE_AT_A_TIME.lock();
    let m = modelled(64, 0, vec![device("gpu0", true, 16, Fault::None)]);
    let path = "/machine/peripheral/gpu0";
    let transfer = "x-migration-multifd-transfer";
    assert_eq!(property(&m.source, path, transfer), "auto");
    let plan = plan(&m, GPU, "", "escalation = [\"abort\"]")
        .replace("state_size = \"64MiB\"", "state_size = \"16MiB\"")
        + "[migration]\nmultifd_channels = 2\ndevice_state_transfer = \"multifd\"\n";
    let (code, report) = run(m.pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["devices"][0]["state_transfer"], "multifd", "{report:#}");
    assert_eq!(status(&m.destination), "running");
    for socket in [&m.source, &m.destination] {
        assert_eq!(
            property(socket, path, transfer),
            "auto",
            "put back on {}",
            socket.display()
        );
    }
}

#[test]
fn an_idle_guest_whose_device_state_fits_the_pause_ceiling_migrates() {
    let _one = ONE_AT_A_TIME.lock();
    // 64 MiB of device state at 128 MiB/s is half a second: well inside 2 s, even though
    // QEMU measures little bandwidth while an idle guest has almost nothing to send.
    let m = modelled(64, 0, vec![device("gpu0", true, 64, Fault::None)]);
    let devices = "[[devices]]\nid = \"gpu0\"\nprecopy = true\nstate_size = \"64MiB\"\n";
    let (code, report) = run(
        m.pair.dir(),
        &plan(&m, devices, "max_downtime = \"2s\"", "escalation = [\"abort\"]"),
    );
    assert_eq!(code, 0, "{}", error(&report));
    assert_eq!(report["running_on"], "destination");
}
