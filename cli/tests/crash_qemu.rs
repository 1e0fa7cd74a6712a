//! Whatever dies, the VM runs in exactly one place, unpaused: the tool killed in pre-copy
//! or while QEMU holds the guest at `pre-switchover`, its terminal closed, a second run
//! of the same VM, a run and its guardian both gone. Every end state is checked through
//! each QEMU's second (observer) monitor, and the guest's own memory check.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_guest_alive, pair, plan_for, qmp, status, wait_for, ONE_AT_A_TIME};
use serde_json::Value;

/// A plan the tool cannot finish quickly: 256 MiB dirtied at 200 MiB/s over 128 MiB/s,
/// judged only after many passes, so that it is still in pre-copy when it is killed.
fn slow_plan(pair: &rig::QemuPair) -> String {
    plan_for(
        pair,
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    )
    .replace("stall_passes = 2", "stall_passes = 100")
}

/// Starts the tool on `plan` with its state under `dir/state`, without waiting for it.
fn start(dir: &Path, plan: &str) -> Child {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--output", "json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vfio-migrate")
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{name} {pid}");
}

fn migration_status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("none")
}

/// Waits for the source's migration to reach `want` (seen through the observer).
fn source_reaches(pair: &rig::QemuPair, want: &str, within: Duration) {
    let seen = wait_for(&pair.source.observer_socket, "query-migrate", within, |v| {
        migration_status(v) == want
    });
    assert_eq!(migration_status(&seen), want, "source migration: {seen}");
}

/// The VM ends on the source, running, with no memory lost, and the destination does
/// not run it.
fn assert_back_on_the_source(pair: &rig::QemuPair, within: Duration) {
    let since = std::time::Instant::now();
    let over = |v: &Value| ["cancelled", "failed"].contains(&migration_status(v));
    let migration = wait_for(&pair.source.observer_socket, "query-migrate", within, over);
    assert!(over(&migration), "the migration is over: {migration}");
    let seen = wait_for(&pair.source.observer_socket, "query-status", within, |v| {
        v["status"] == "running"
    });
    assert_eq!(seen["status"], "running", "source: {seen}");
    eprintln!(
        "back on the source, running, {:?} after the check began",
        since.elapsed()
    );
    assert_ne!(
        qmp(&pair.destination.observer_socket, "query-status")["status"],
        "running"
    );
    assert_guest_alive(&pair.source);
}

/// Runs `vfio-migrate recover` on the plan in `dir`; its exit code and JSON report.
fn recover(dir: &Path) -> (i32, Value) {
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--output", "json", "recover"])
        .arg(dir.join("plan.toml"))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("recover");
    let report = serde_json::from_slice(&out.stdout).expect("one JSON report");
    (out.status.code().unwrap_or(-1), report)
}

fn guardian_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("state/guardian.log")).unwrap_or_default()
}

/// The guardian of the run `tool`: its child running `guard`.
fn guardian_of(tool: u32) -> u32 {
    for _ in 0..100 {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1));
            let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default();
            if ppid == Some(&tool.to_string()) && cmdline.split('\0').any(|a| a == "guard") {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("run {tool} has no guardian");
}

#[test]
fn killed_in_precopy_the_guardian_cancels_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let mut tool = start(pair.dir(), &slow_plan(&pair));
    source_reaches(&pair, "active", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    tool.kill().expect("SIGKILL the tool");
    let _ = tool.wait();
    assert_back_on_the_source(&pair, Duration::from_secs(10));
    let log = guardian_log(pair.dir());
    assert!(
        log.contains("died; repairing") && log.contains("cancelled the migration"),
        "{log}"
    );
}

#[test]
fn killed_while_qemu_holds_the_guest_at_pre_switchover_the_guest_is_not_left_frozen() {
    let _one = ONE_AT_A_TIME.lock();
    // Converges in about 3 s: with the tool stopped, QEMU stops the guest at
    // pre-switchover and waits for a continue that never comes.
    let pair = pair(256, 50);
    let plan = plan_for(&pair, "max_bandwidth = \"128MiB/s\"", "escalation = [\"abort\"]");
    let mut tool = start(pair.dir(), &plan);
    source_reaches(&pair, "active", Duration::from_secs(20));
    signal(tool.id(), "STOP");
    source_reaches(&pair, "pre-switchover", Duration::from_secs(30));
    assert_eq!(
        status(&pair.source.observer_socket),
        "finish-migrate",
        "the guest is frozen"
    );
    tool.kill().expect("SIGKILL the stopped tool");
    let _ = tool.wait();
    assert_back_on_the_source(&pair, Duration::from_secs(10));
}

#[test]
fn a_closed_terminal_cancels_like_sigterm() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let tool = start(pair.dir(), &slow_plan(&pair));
    source_reaches(&pair, "active", Duration::from_secs(20));
    signal(tool.id(), "HUP");
    let out = tool.wait_with_output().expect("the tool ends");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["reason"]["kind"], "interrupted");
    assert_back_on_the_source(&pair, Duration::from_secs(5));
    assert!(
        guardian_log(pair.dir()).is_empty(),
        "the guardian had nothing to do"
    );
}

#[test]
fn a_second_run_of_the_same_vm_is_refused_at_once_naming_the_first() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let plan = slow_plan(&pair);
    let first = start(pair.dir(), &plan);
    source_reaches(&pair, "active", Duration::from_secs(20));
    let started = std::time::Instant::now();
    let second = start(pair.dir(), &plan)
        .wait_with_output()
        .expect("second run ends");
    assert!(started.elapsed() < Duration::from_secs(5), "refused at once");
    assert_eq!(second.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&second.stdout).expect("one JSON object");
    let msg = report["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(&format!("pid {}", first.id())), "{msg}");
    signal(first.id(), "INT");
    let out = first.wait_with_output().expect("first run ends");
    assert_eq!(out.status.code(), Some(130));
    assert_back_on_the_source(&pair, Duration::from_secs(5));
}

#[test]
fn recover_repairs_what_a_dead_run_and_its_dead_guardian_left_behind() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let plan = plan_for(&pair, "max_bandwidth = \"128MiB/s\"", "escalation = [\"abort\"]");
    let mut tool = start(pair.dir(), &plan);
    let guardian = guardian_of(tool.id());
    source_reaches(&pair, "active", Duration::from_secs(20));
    signal(guardian, "STOP");
    signal(tool.id(), "STOP");
    source_reaches(&pair, "pre-switchover", Duration::from_secs(30));
    tool.kill().expect("SIGKILL the tool");
    let _ = tool.wait();
    signal(guardian, "KILL");
    assert_eq!(
        status(&pair.source.observer_socket),
        "finish-migrate",
        "left frozen"
    );

    let (code, report) = recover(pair.dir());
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["found_placement"]["kind"], "in_progress");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["changed"], true);
    assert_back_on_the_source(&pair, Duration::from_secs(5));

    // The journal now says nothing is left to undo: recover again changes nothing.
    let (code, second) = recover(pair.dir());
    assert_eq!(code, 0, "{second:#}");
    assert_eq!(second["changed"], false);
}
