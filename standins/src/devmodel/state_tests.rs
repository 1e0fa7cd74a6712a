//! The state machine on its own, fed QEMU's events by hand.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;
use crate::devmodel::config::{ProxyConfig, Role};
use crate::vfio::{Fault, ModelDevice};

const MIB: u64 = 1024 * 1024;

fn model(role: Role, devices: Vec<ModelDevice>) -> Model {
    let cfg = ProxyConfig {
        upstream: "/nonexistent".into(),
        listen: "/nonexistent".into(),
        role,
        devices,
        link_bytes_per_sec: 128 * MIB,
    };
    let mut model = Model::new(&cfg);
    model.set_initial(role == Role::Source, true);
    model
}

fn dev(id: &str, precopy: bool, p2p: bool, state_size: u64) -> ModelDevice {
    ModelDevice {
        precopy,
        p2p,
        state_size,
        ..ModelDevice::new(id)
    }
}

/// `id:state` for device events, `+` prefixed when placed before QEMU's event.
fn labels(model: &mut Model) -> Vec<String> {
    model
        .take_outbox()
        .into_iter()
        .map(|i| {
            let v: Value = serde_json::from_str(i.line.trim_end()).expect("json");
            let d = &v["data"];
            let text = match v["event"].as_str() {
                Some("VFIO_MIGRATION") => format!(
                    "{}:{}",
                    d["device-id"].as_str().unwrap_or("?"),
                    d["device-state"].as_str().unwrap_or("?")
                ),
                Some("MIGRATION") => format!("MIGRATION:{}", d["status"].as_str().unwrap_or("?")),
                Some(other) => other.to_owned(),
                None => "?".to_owned(),
            };
            if i.before {
                format!("+{text}")
            } else {
                text
            }
        })
        .collect()
}

fn status(model: &mut Model, status: &str) -> Vec<Action> {
    model.on_event("MIGRATION", &json!({"status": status}))
}

#[test]
fn source_follows_qemu_through_a_paused_switchover() {
    let mut m = model(
        Role::Source,
        vec![
            dev("pc", true, false, 8 * MIB),
            dev("sc", false, false, 8 * MIB),
            dev("pp", true, true, 0),
        ],
    );
    assert!(status(&mut m, "setup").is_empty());
    assert_eq!(labels(&mut m), ["pc:pre-copy", "pp:pre-copy"]);
    status(&mut m, "active");
    assert!(labels(&mut m).is_empty());
    m.on_event("STOP", &json!({}));
    assert_eq!(
        labels(&mut m),
        ["+pp:pre-copy-p2p", "+pc:stop-copy", "+sc:stop", "+pp:stop-copy"]
    );
    status(&mut m, "pre-switchover");
    let (drain, actions) = m.begin_hold().expect("paused for switchover");
    // 16 MiB left at 128 MiB/s, less what pc sent in its (near-zero) pre-copy.
    assert!(
        drain <= Duration::from_millis(125) && drain > Duration::from_millis(100),
        "{drain:?}"
    );
    assert_eq!(labels(&mut m), ["MIGRATION:device", "sc:stop-copy"]);
    assert!(m.holding());
    assert!(m.begin_hold().is_none(), "one hold per switchover");
    let Some(Action::Timer(_, release)) = actions.first().cloned() else {
        panic!("{actions:?}");
    };
    assert_eq!(
        m.on_timer(release),
        [Action::Upstream(
            "migrate-continue",
            json!({"state": "pre-switchover"})
        )]
    );
    assert_eq!(m.client_view(&json!({"status": "device"})), EventView::Drop);
    status(&mut m, "device");
    status(&mut m, "completed");
    assert_eq!(labels(&mut m), ["pc:stop", "sc:stop", "pp:stop"]);
    let mut info = Map::new();
    info.insert("status".into(), json!("completed"));
    m.rewrite_query_migrate(&mut info);
    assert_eq!(info["vfio"]["transferred"], json!(16 * MIB));
}

#[test]
fn a_failure_while_stopped_leaves_restarting_to_resume() {
    let mut m = model(Role::Source, vec![dev("pp", false, true, MIB)]);
    status(&mut m, "setup");
    m.on_event("STOP", &json!({}));
    assert_eq!(labels(&mut m), ["+pp:running-p2p", "+pp:stop"]);
    status(&mut m, "failed");
    assert!(
        labels(&mut m).is_empty(),
        "QEMU restarts the VM, and the devices with it"
    );
    m.on_event("RESUME", &json!({}));
    assert_eq!(labels(&mut m), ["pp:running-p2p", "pp:running"]);
}

#[test]
fn a_cancel_in_precopy_returns_devices_to_running() {
    let mut m = model(Role::Source, vec![dev("pc", true, false, MIB)]);
    status(&mut m, "setup");
    labels(&mut m);
    status(&mut m, "cancelling");
    status(&mut m, "cancelled");
    assert_eq!(labels(&mut m), ["pc:running"]);
    assert_eq!(m.client_view(&json!({"status": "cancelled"})), EventView::Keep);
}

#[test]
fn a_device_error_cancels_and_looks_failed() {
    let fault = Fault::ErrorInPrecopy {
        after: Duration::from_millis(10),
    };
    let mut m = model(
        Role::Source,
        vec![ModelDevice {
            fault,
            ..dev("bad", true, false, MIB)
        }],
    );
    let actions = status(&mut m, "setup");
    let [Action::Timer(delay, timer)] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(*delay, Duration::from_millis(10));
    assert_eq!(
        m.on_timer(*timer),
        [Action::Upstream("migrate_cancel", json!({}))]
    );
    assert_eq!(m.on_timer(*timer), [], "fails once");
    assert_eq!(m.client_view(&json!({"status": "cancelling"})), EventView::Drop);
    assert_eq!(
        m.client_view(&json!({"status": "cancelled"})),
        EventView::Replace(json!({"status": "failed"}))
    );
    let mut info = Map::new();
    info.insert("status".into(), json!("cancelled"));
    m.rewrite_query_migrate(&mut info);
    assert_eq!(
        Value::Object(info),
        json!({"status": "failed", "error-desc": "vfio: error while saving device bad state"})
    );
}

#[test]
fn timers_from_an_earlier_migration_do_nothing() {
    let fault = Fault::SlowToSaving(Duration::from_millis(5));
    let mut m = model(
        Role::Source,
        vec![ModelDevice {
            fault,
            ..dev("slow", true, false, MIB)
        }],
    );
    let actions = status(&mut m, "setup");
    let [Action::Timer(_, stale)] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    status(&mut m, "cancelled");
    status(&mut m, "setup");
    assert!(m.on_timer(*stale).is_empty());
    assert!(labels(&mut m).is_empty());
}

#[test]
fn device_del_is_refused_while_migrating() {
    let mut m = model(Role::Source, vec![dev("a", false, false, 0)]);
    assert!(m.device_del("nope").is_none());
    status(&mut m, "setup");
    let refused = m.device_del("a").expect("modelled");
    assert_eq!(
        refused,
        Err((
            "GenericError",
            "device_del not allowed while migrating".to_owned()
        ))
    );
    status(&mut m, "cancelled");
    assert_eq!(m.device_del("a"), Some(Ok(())));
    assert_eq!(labels(&mut m), ["DEVICE_DELETED"]);
    assert!(m.peripheral_children().is_empty());
    assert!(m.device_del("a").is_none(), "gone");
}

#[test]
fn destination_resumes_then_runs() {
    let mut m = model(
        Role::Destination,
        vec![dev("pp", true, true, MIB), dev("sc", false, false, MIB)],
    );
    status(&mut m, "setup");
    assert!(labels(&mut m).is_empty());
    status(&mut m, "active");
    assert_eq!(labels(&mut m), ["pp:resuming", "sc:resuming"]);
    status(&mut m, "completed");
    assert!(labels(&mut m).is_empty());
    m.on_event("RESUME", &json!({}));
    assert_eq!(labels(&mut m), ["pp:running-p2p", "pp:running", "sc:running"]);
}

#[test]
fn silent_devices_still_change_state() {
    let quiet = ModelDevice {
        migration_events: false,
        ..dev("off", true, false, 0)
    };
    let missing = ModelDevice {
        fault: Fault::EventsMissing,
        ..dev("missing", true, false, 0)
    };
    let mut m = model(Role::Source, vec![quiet, missing]);
    status(&mut m, "setup");
    assert!(labels(&mut m).is_empty());
    let states: Vec<(String, String)> = m.timeline().into_iter().map(|(d, s, _)| (d, s)).collect();
    assert_eq!(
        states,
        [
            ("off".into(), "pre-copy".into()),
            ("missing".into(), "pre-copy".into())
        ]
    );
}

#[test]
fn without_events_a_successful_migrate_starts_saving_and_polling() {
    let mut m = model(Role::Source, vec![dev("pc", true, false, 0)]);
    m.on_command_ok(
        "migrate-set-capabilities",
        &json!({"capabilities": [{"capability": "events", "state": false}]}),
    );
    assert!(!m.wants_poll());
    m.on_command_ok("migrate", &json!({"uri": "tcp:127.0.0.1:1"}));
    assert!(m.wants_poll());
    assert_eq!(labels(&mut m), ["pc:pre-copy"]);
    m.on_polled_status("completed");
    assert!(!m.wants_poll());
}
