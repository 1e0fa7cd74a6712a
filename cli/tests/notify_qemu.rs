//! Webhooks from real migrations: the binary migrates between two QEMUs on loopback
//! with `--notify` to a receiver the test started. The events arrive in order, signed,
//! from `run_started` to the result, with every device transition the report has; and
//! a receiver that hangs or answers 500 changes neither the result nor the guest's
//! pause.
//!
//! The tests run one at a time (a lock), as the other QEMU tests do.

mod common;

use std::path::Path;
use std::time::Duration;

use common::devmodel::{device, modelled};
use common::hooks::{Answer, Receiver, Request};
use common::{assert_guest_alive, pair, plan_for, status, ONE_AT_A_TIME};
use serde_json::Value;
use standins::vfio::Fault;

const KEY: &str = "a-key-for-the-notify-tests";
const KEY_VAR: &str = "VFIO_MIGRATE_TEST_WEBHOOK_KEY";

/// Runs the binary on `plan` with `--output json` and `args`, the key in [`KEY_VAR`];
/// returns the exit code, the report and stderr.
fn run(dir: &Path, plan: &str, args: &[&str]) -> (i32, Value, String) {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .env(KEY_VAR, KEY)
        .args(["--output", "json"])
        .args(args)
        .arg(&path)
        .timeout(Duration::from_secs(180))
        .output()
        .expect("run vfio-migrate");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}); stderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Each request's (kind, data) in the order they arrived.
fn kinds(requests: &[Request]) -> Vec<(String, Value)> {
    requests
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["event"].as_str().unwrap_or("?").to_string(),
                body["data"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_migration_tells_the_receiver_every_step_in_order_signed_and_counts_them() {
    let _one = ONE_AT_A_TIME.lock();
    let receiver = Receiver::start(Answer::Status(204));
    let m = modelled(256, 50, vec![device("gpu0", true, 16, Fault::None)]);
    let plan = format!(
        "[vm]\nname = \"hooked\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\n\
         listen = \"tcp:127.0.0.1:{}\"\n[[devices]]\nid = \"gpu0\"\nstate_size = \"16MiB\"\n\
         [limits]\nmax_bandwidth = \"128MiB/s\"\nmax_downtime = \"2s\"\n[convergence]\nstall_passes = 2\n\
         [policy]\nescalation = [\"force-downtime\", \"abort\"]\n",
        m.source.display(),
        m.destination.display(),
        m.pair.migration_port
    );
    let (code, report, stderr) = run(
        m.pair.dir(),
        &plan,
        &["--notify", &receiver.url, "--notify-secret-env", KEY_VAR],
    );
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(status(&m.destination), "running");
    assert!(!stderr.contains("webhook"), "no webhook warning: {stderr}");
    assert!(
        !stderr.contains(KEY) && !report.to_string().contains(KEY),
        "the key is never printed"
    );

    // The report's counts are what the receiver got, once each.
    let got = receiver.requests();
    assert_eq!(
        report["notify"]["sent"].as_u64(),
        Some(got.len() as u64),
        "{:#}",
        report["notify"]
    );
    assert_eq!(report["notify"]["failed"], 0);
    assert_eq!(report["notify"]["dropped"], 0);
    let seqs: Vec<u64> = got
        .iter()
        .map(|r| r.json()["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        seqs,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "in order, none missing"
    );
    for r in &got {
        assert!(r.signed_with(KEY.as_bytes()), "bad signature on {}", r.json());
        assert_eq!(r.json()["vm"], "hooked");
    }

    let events = kinds(&got);
    for (kind, data) in &events {
        println!("{kind} {data}");
    }
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("run_started"));
    let (last, result) = events.last().cloned().unwrap_or_default();
    assert_eq!(last, "result");
    assert_eq!(result["result"], "migrated");
    assert_eq!(result["rc"], 0);
    assert_eq!(result["paused_ms"], report["paused_ms"]);
    let phases: Vec<&str> = events
        .iter()
        .filter(|(kind, _)| kind == "phase" || kind == "switchover")
        .filter_map(|(_, data)| data["phase"].as_str())
        .collect();
    assert_eq!(
        phases,
        [
            "connect",
            "preflight",
            "configure",
            "listen",
            "migrate",
            "converge",
            "switchover",
            "verify"
        ]
    );
    // Every device transition the report has, in its order, at its time.
    let streamed: Vec<(Value, Value)> = events
        .iter()
        .filter(|(kind, _)| kind == "device")
        .map(|(_, data)| (data["state"].clone(), data["at_ms"].clone()))
        .collect();
    let reported: Vec<(Value, Value)> = report["devices"][0]["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["state"].clone(), c["at_ms"].clone()))
        .collect();
    assert_eq!(streamed, reported);
    let states: Vec<&str> = streamed.iter().filter_map(|(s, _)| s.as_str()).collect();
    assert!(states.ends_with(&["stop-copy", "stop"]), "{states:?}");
}

/// Migrates the converging workload on a fresh pair, with `notify` (a `[notify]` table)
/// and `args`; returns the report.
fn converging(notify: &str, args: &[&str]) -> Value {
    let pair = pair(256, 50);
    let plan = format!(
        "{}{notify}",
        plan_for(&pair, "max_bandwidth = \"128MiB/s\"", "escalation = [\"abort\"]")
    );
    let (code, report, stderr) = run(pair.dir(), &plan, args);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["result"], "migrated");
    assert_eq!(status(&pair.destination.qmp_socket), "running");
    assert_guest_alive(&pair.destination);
    report
}

#[test]
fn a_receiver_that_hangs_or_answers_500_changes_neither_the_result_nor_the_pause() {
    let _one = ONE_AT_A_TIME.lock();
    let hanging = Receiver::start(Answer::Hang);
    let failing = Receiver::start(Answer::Status(500));
    // Short bounds, so the run's end does not wait long; still every event is being
    // tried again while the guest is paused.
    let notify = "[notify]\nurls = []\ntimeout = \"1s\"\nretry_for = \"3s\"\n";
    let notify = |url: &str| notify.replace("urls = []", &format!("urls = [\"{url}\"]"));

    let alone = converging("", &[]);
    assert_eq!(alone["notify"], Value::Null, "no webhooks, no counts");
    let hung = converging(&notify(&hanging.url), &[]);
    let refused = converging(&notify(&failing.url), &["--notify-secret-env", KEY_VAR]);

    let paused = |r: &Value| r["paused_ms"].as_u64().unwrap_or(u64::MAX);
    let (base, with_hang, with_500) = (paused(&alone), paused(&hung), paused(&refused));
    println!("paused_ms: alone {base}, receiver hanging {with_hang}, receiver answering 500 {with_500}");
    println!("notify: hanging {}, 500 {}", hung["notify"], refused["notify"]);
    for (what, ms) in [("hanging", with_hang), ("500", with_500)] {
        assert!(
            ms < 2 * base + 20,
            "a {what} receiver lengthened the pause: {ms}ms against {base}ms without webhooks"
        );
    }
    for (report, receiver) in [(&hung, &hanging), (&refused, &failing)] {
        let counts = &report["notify"];
        assert_eq!(counts["sent"], 0, "{counts}");
        assert!(counts["failed"].as_u64() >= Some(1), "{counts}");
        let tried = receiver.requests().len();
        assert!(tried >= 1, "the receiver was tried");
    }
    assert!(
        failing.requests().len() > hung["notify"]["failed"].as_u64().unwrap_or(0) as usize,
        "a 500 is tried again"
    );
}
