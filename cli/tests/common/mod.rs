//! Helpers shared by the tests that drive the binary against real QEMU.

#![allow(dead_code)]

pub mod devmodel;
pub mod hooks;
pub mod proxy;
pub mod tls;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use backends::qmp::{QmpClient, QmpEndpoint};
use rig::{Accel, GuestParams, PairOptions, QemuPair};
use serde_json::Value;

/// The tests run one at a time: each pair needs a core for the guest's dirtying loop,
/// and timings are what several of them assert.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts a pair with the given workload (KVM with the dirty ring where available).
pub fn pair(wss_mb: u32, rate_mb: u32) -> QemuPair {
    QemuPair::start(&PairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        accel: Accel::Auto,
        dirty_ring: true,
        ..PairOptions::default()
    })
    .expect("start the QEMU pair")
}

/// A plan for the pair with extra limit and policy lines.
pub fn plan_for(pair: &QemuPair, limits: &str, policy: &str) -> String {
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
pub fn run(dir: &Path, plan: &str) -> (i32, Value) {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
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

/// Sends one QMP command to a QEMU and returns its `return` value.
pub fn qmp(socket: &Path, command: &str) -> Value {
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
        client.execute_raw(command, None).await.expect("QMP command")
    })
}

/// Polls `what` on a QEMU's monitor every 20 ms until `want` holds or `within` passed;
/// returns the last value seen.
pub fn wait_for(socket: &Path, command: &str, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = qmp(socket, command);
        if want(&seen) || std::time::Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks a QEMU for its run state, as `query-status` spells it.
pub fn status(socket: &Path) -> String {
    qmp(socket, "query-status")["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

pub fn actions(report: &Value) -> Vec<String> {
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
pub fn assert_guest_alive(side: &rig::QemuProcess) {
    let seen = side.heartbeats().len();
    let hb = side
        .wait_for_heartbeat_after(seen, Duration::from_secs(5))
        .expect("a fresh heartbeat from the guest");
    assert_eq!(hb.errors, 0, "the guest found pages that lost writes: {hb:?}");
}

/// Runs `check` on a plan; returns the exit code and the JSON answer.
pub fn check(dir: &Path, plan: &str) -> (i32, Value) {
    let path = dir.join("check-plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(["--output", "json", "check"])
        .arg(&path)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run vfio-migrate check");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("check: {answer:#}");
    (out.status.code().unwrap_or(-1), answer)
}

/// The row with this id; panics naming the ids there are.
pub fn row<'a>(answer: &'a Value, id: &str) -> &'a Value {
    let rows = answer["rows"].as_array().expect("rows");
    rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| {
        let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
        panic!("no row {id}; rows: {ids:?}")
    })
}

/// The device model's `<emulator>` wrapper, built when this test binary was built alone.
pub fn model_wrapper() -> std::path::PathBuf {
    let tool = assert_cmd::cargo::cargo_bin("vfio-migrate");
    let wrapper = tool.with_file_name("vfio-model-qemu");
    if !wrapper.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", "vfio-migrate-standins", "--bin", "vfio-model-qemu"])
            .status()
            .expect("run cargo");
        assert!(built.success(), "build vfio-model-qemu");
    }
    wrapper
}
