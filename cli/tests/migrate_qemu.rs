//! The real thing: two QEMUs on loopback, the project's dirtying guest, and the
//! `vfio-migrate` binary carrying out a plan between them. Each test checks the exit
//! code, the report, and where the VM runs afterwards by asking both QEMUs itself.
//!
//! The tests run one at a time (a lock): each pair needs a core for the guest's dirtying
//! loop, and timings are what several of them assert.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use backends::qmp::{QmpClient, QmpEndpoint};
use rig::{Accel, GuestParams, PairOptions, QemuPair};
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts a pair with the given workload (KVM with the dirty ring where available).
fn pair(wss_mb: u32, rate_mb: u32) -> QemuPair {
    QemuPair::start(&PairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        accel: Accel::Auto,
        dirty_ring: true,
        ..PairOptions::default()
    })
    .expect("start the QEMU pair")
}

/// A plan for the pair with extra limit and policy lines.
fn plan_for(pair: &QemuPair, limits: &str, policy: &str) -> String {
    format!(
        r#"[vm]
name = "test"
[source]
qmp = "unix:{src}"
[destination]
qmp = "unix:{dst}"
listen = "tcp:127.0.0.1:{port}"
[limits]
{limits}
[convergence]
stall_passes = 2
[policy]
{policy}
"#,
        src = pair.source.qmp_socket.display(),
        dst = pair.destination.qmp_socket.display(),
        port = pair.migration_port,
    )
}

/// Runs the binary on a plan; returns the exit code and the JSON report.
fn run(dir: &Path, plan: &str) -> (i32, Value) {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["--output", "json"])
        .arg(&path)
        .timeout(Duration::from_secs(180))
        .output()
        .expect("run vfio-migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}); stderr:\n{stderr}"));
    eprintln!("report: {report:#}");
    (out.status.code().unwrap_or(-1), report)
}

/// Asks a QEMU for its run state, as `query-status` spells it.
fn status(socket: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = QmpClient::connect(
            &QmpEndpoint::Unix(socket.to_path_buf()),
            "test",
            Duration::from_secs(5),
        )
        .await
        .expect("connect to QEMU");
        let reply = client
            .execute_raw("query-status", None)
            .await
            .expect("query-status");
        reply["status"].as_str().unwrap_or("?").to_string()
    })
}

fn actions(report: &Value) -> Vec<String> {
    report["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["action"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The guest keeps running on `side` with no memory lost.
fn assert_guest_alive(side: &rig::QemuProcess) {
    let seen = side.heartbeats().len();
    let hb = side
        .wait_for_heartbeat_after(seen, Duration::from_secs(5))
        .expect("a fresh heartbeat from the guest");
    assert_eq!(hb.errors, 0, "the guest found pages that lost writes: {hb:?}");
}

#[test]
fn a_an_idle_guest_migrates_and_the_destination_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let (code, report) = run(pair.dir(), &plan_for(&pair, "", "escalation = [\"abort\"]"));
    assert_eq!(code, 0);
    assert_eq!(report["result"], "migrated");
    assert_eq!(report["running_on"], "destination");
    assert_eq!(report["changed"], true);
    assert_eq!(status(&pair.destination.qmp_socket), "running");
    assert_eq!(status(&pair.source.qmp_socket), "postmigrate");
    assert!(report["paused_ms"].as_u64().is_some(), "the pause was measured");
    assert_guest_alive(&pair.destination);
}

#[test]
fn b_a_converging_workload_completes_within_the_downtime_limit() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let plan = plan_for(
        &pair,
        "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"",
        "escalation = [\"abort\"]",
    );
    let (code, report) = run(pair.dir(), &plan);
    assert_eq!(code, 0);
    assert_eq!(report["result"], "migrated");
    let downtime = report["downtime_ms"].as_u64().expect("QEMU's downtime");
    assert!(downtime <= 300, "downtime {downtime}ms above the 300ms limit");
    assert!(actions(&report).is_empty(), "no policy action was needed");
    assert_eq!(status(&pair.destination.qmp_socket), "running");
    assert_guest_alive(&pair.destination);
}

#[test]
fn c_a_workload_faster_than_the_link_is_aborted_and_stays_on_the_source() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let plan = plan_for(
        &pair,
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    );
    let (code, report) = run(pair.dir(), &plan);
    assert_eq!(code, 1);
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["changed"], false);
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("not converging"), "{error}");
    assert!(error.contains("pass "), "the report says at which pass: {error}");
    let passes = report["passes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        passes <= 5,
        "acted within a few dirty-sync passes, not at the deadline ({passes})"
    );
    assert_eq!(status(&pair.source.qmp_socket), "running");
    assert_ne!(status(&pair.destination.qmp_socket), "running");
    assert_guest_alive(&pair.source);
}

#[test]
fn d_forcing_raises_the_downtime_limit_and_completes() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let plan = plan_for(
        &pair,
        "max_bandwidth = \"128MiB/s\"\nmax_downtime = \"6s\"\ndeadline = \"120s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(actions(&report), vec!["raise-downtime".to_string()]);
    let raised = report["actions"][0]["to_ms"].as_u64().expect("new limit");
    assert!(raised > 300 && raised <= 6000, "{raised}");
    let paused = report["paused_ms"].as_u64().expect("measured pause");
    assert!(
        paused > 0 && paused <= raised + 1000,
        "paused {paused}ms against a limit of {raised}ms"
    );
    assert_eq!(status(&pair.destination.qmp_socket), "running");
    assert_guest_alive(&pair.destination);
}

#[test]
fn e_a_dirty_limit_makes_a_stalled_workload_converge() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    if !pair.accel.dirty_ring {
        panic!(
            "this test needs KVM with the dirty ring; the rig chose {:?}",
            pair.accel
        );
    }
    let plan = plan_for(
        &pair,
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"30MiB/s\"",
    );
    let (code, report) = run(pair.dir(), &plan);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(actions(&report), vec!["throttle".to_string()]);
    assert_eq!(status(&pair.destination.qmp_socket), "running");
    assert_guest_alive(&pair.destination);
}

#[test]
fn f_sigint_cancels_and_leaves_the_vm_running_on_the_source() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    // A workload that cannot converge, and a policy that would wait a long time.
    let plan = plan_for(
        &pair,
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    )
    .replace("stall_passes = 2", "stall_passes = 100");
    let path = pair.dir().join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let bin = assert_cmd::cargo::cargo_bin("vfio-migrate");
    let child = std::process::Command::new(bin)
        .args(["--output", "json"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vfio-migrate");
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report after the interrupt");
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["running_on"], "source");
    assert_eq!(status(&pair.source.qmp_socket), "running");
    assert_guest_alive(&pair.source);
}
