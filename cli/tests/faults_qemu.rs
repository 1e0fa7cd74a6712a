//! Hosts and streams that fail while the tool runs: a QEMU killed on either side, a
//! monitor connection closed, a destination frozen, the migration stream stalled, a
//! destination that does not listen. In each the tool is the real binary against two
//! real QEMUs; the end state is read through each QEMU's second (observer) monitor and
//! the guest's own memory check, and the exit code and JSON report must say what
//! happened.
//!
//! The promise checked: at the end the VM runs in exactly one place, unpaused, with no
//! memory lost, and the report says where; or, when the only copy of the VM died with
//! its QEMU, nothing is started in its place and the report says a person must look.
//!
//! Faults are placed by what QEMU reports (a migration status, bytes through a proxy),
//! not by how fast the guest dirties memory, which drops when the machine is busy.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{MonitorProxy, StreamProxy};
use common::{assert_guest_alive, pair, plan_for, qmp, status, wait_for, ONE_AT_A_TIME};
use serde_json::Value;

/// QEMU's command timeout in the tool: a side that does not answer within it is not
/// answering (see backends' `DEFAULT_COMMAND_TIMEOUT`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A plan whose first pass alone takes at least 8 s, whatever the guest does: 256 MiB of
/// working set at 32 MiB/s. Only a fault (or `limits`) ends it early: the policy waits
/// 100 stalled passes and the deadline is 2 minutes unless `limits` says otherwise.
fn precopy_plan(pair: &rig::QemuPair, limits: &str) -> String {
    let limits = match limits.contains("deadline") {
        true => format!("max_bandwidth = \"32MiB/s\"\n{limits}"),
        false => format!("max_bandwidth = \"32MiB/s\"\ndeadline = \"120s\"\n{limits}"),
    };
    plan_for(pair, &limits, "escalation = [\"abort\"]").replace("stall_passes = 2", "stall_passes = 100")
}

/// A plan that converges in a few seconds (256 MiB, dirtied at 50 MiB/s or less, over
/// 128 MiB/s), judged only by the deadline.
fn converging_plan(pair: &rig::QemuPair, deadline: &str) -> String {
    plan_for(
        pair,
        &format!("max_bandwidth = \"128MiB/s\"\ndeadline = \"{deadline}\""),
        "escalation = [\"abort\"]",
    )
    .replace("stall_passes = 2", "stall_passes = 100")
}

/// The plan with the source's (or destination's) monitor replaced by `path`.
fn through(plan: &str, monitor: &Path, path: &Path) -> String {
    plan.replace(
        &format!("unix:{}", monitor.display()),
        &format!("unix:{}", path.display()),
    )
}

/// A run of the tool in the background, with its state under the pair's directory.
struct Tool {
    child: Child,
}

/// How a run ended: its exit code, its JSON report, and what it told people on stderr.
struct Ended {
    code: i32,
    report: Value,
    stderr: String,
}

impl Tool {
    fn start(dir: &Path, plan: &str) -> Tool {
        let path = dir.join("plan.toml");
        std::fs::write(&path, plan).expect("write plan");
        let child = Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--output", "json"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vfio-migrate");
        Tool { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the run to end (at most `within`; then it is killed and the test fails).
    fn end(self, within: Duration) -> Ended {
        let pid = self.pid();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.child.wait_with_output());
        });
        let out = match rx.recv_timeout(within) {
            Ok(out) => out.expect("the tool's output"),
            Err(_) => {
                signal(pid, "KILL");
                panic!("the tool did not end within {within:?}");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}); stderr:\n{stderr}"));
        eprintln!("report: {report:#}\nstderr:\n{stderr}");
        Ended {
            code: out.status.code().unwrap_or(-1),
            report,
            stderr,
        }
    }
}

impl Ended {
    /// The typed reason's kind (`connection_lost`, `policy`, ...).
    fn reason(&self) -> &str {
        self.report["reason"]["kind"].as_str().unwrap_or("none")
    }

    fn error(&self) -> &str {
        self.report["error"].as_str().unwrap_or_default()
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{name} {pid}");
}

/// A side's migration status as its observer monitor reports it (`none` before any).
fn migration(socket: &Path) -> String {
    qmp(socket, "query-migrate")["status"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Waits for the source's migration to reach `want` (seen through the observer).
fn source_reaches(pair: &rig::QemuPair, want: &str, within: Duration) {
    let seen = wait_for(&pair.source.observer_socket, "query-migrate", within, |v| {
        v["status"] == want
    });
    assert_eq!(seen["status"], want, "source migration: {seen}");
}

/// Waits until the source has sent `bytes` of RAM: the migration is under way, past
/// its setup.
fn source_sent(pair: &rig::QemuPair, bytes: u64) {
    let seen = wait_for(
        &pair.source.observer_socket,
        "query-migrate",
        Duration::from_secs(30),
        |v| v["ram"]["transferred"].as_u64().unwrap_or(0) >= bytes,
    );
    assert!(
        seen["ram"]["transferred"].as_u64().unwrap_or(0) >= bytes,
        "the source did not send {bytes} bytes: {seen}"
    );
}

/// The VM runs on the source and only there: the migration is over (`want` says how),
/// the source runs, the destination (if its QEMU is alive) does not, and the guest
/// found no page that lost a write.
fn assert_runs_only_on_the_source(pair: &rig::QemuPair, want: &str) {
    let over = wait_for(
        &pair.source.observer_socket,
        "query-migrate",
        Duration::from_secs(10),
        |v| v["status"] == want,
    );
    assert_eq!(over["status"], want, "source migration: {over}");
    let seen = wait_for(
        &pair.source.observer_socket,
        "query-status",
        Duration::from_secs(10),
        |v| v["status"] == "running",
    );
    assert_eq!(seen["status"], "running", "source: {seen}");
    if pair.destination.is_running() {
        assert_ne!(status(&pair.destination.observer_socket), "running");
    }
    assert_guest_alive(&pair.source);
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

// 1. The destination QEMU dies during pre-copy.
#[test]
fn the_destination_killed_in_precopy_leaves_the_vm_running_on_the_source() {
    let _one = ONE_AT_A_TIME.lock();
    let mut pair = pair(256, 50);
    let tool = Tool::start(pair.dir(), &precopy_plan(&pair, ""));
    source_sent(&pair, 16 << 20);
    pair.destination.kill();

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 1, "not migrated, the VM on the source");
    assert_eq!(end.report["result"], "failed");
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.report["destination_state"], "gone");
    // Whichever is noticed first names it: the destination's monitor closing, or the
    // source's stream failing (QEMU's own words).
    match end.reason() {
        "connection_lost" => {
            assert_eq!(end.report["reason"]["side"], "destination");
            assert!(
                end.error().starts_with("destination: connection lost"),
                "{}",
                end.error()
            );
        }
        "migration_failed" => assert!(!end.error().is_empty()),
        other => panic!("reason {other}: {:#}", end.report),
    }
    let over = migration(&pair.source.observer_socket);
    assert!(["failed", "cancelled"].contains(&over.as_str()), "{over}");
    assert_runs_only_on_the_source(&pair, &over);
}

// 2. The destination QEMU dies while the source holds the guest at pre-switchover.
#[test]
fn the_destination_killed_at_pre_switchover_is_cancelled_not_continued_and_the_source_resumes() {
    let _one = ONE_AT_A_TIME.lock();
    let mut pair = pair(256, 50);
    let tool = Tool::start(pair.dir(), &converging_plan(&pair, "120s"));
    source_reaches(&pair, "active", Duration::from_secs(20));
    // Stopped, the tool cannot answer: QEMU stops the guest at pre-switchover and waits.
    signal(tool.pid(), "STOP");
    source_reaches(&pair, "pre-switchover", Duration::from_secs(60));
    assert_eq!(
        status(&pair.source.observer_socket),
        "finish-migrate",
        "the guest is held"
    );
    pair.destination.kill();
    signal(tool.pid(), "CONT");

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 1);
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "connection_lost");
    assert_eq!(end.report["reason"]["side"], "destination");
    assert_eq!(end.report["destination_state"], "gone");
    // Cancelled at pre-switchover, never continued into a destination that is gone.
    assert_eq!(end.report["switchover_latency_us"], Value::Null);
    assert_runs_only_on_the_source(&pair, "cancelled");
}

// 3. The source QEMU dies mid-migration: the only complete copy of the VM is gone.
#[test]
fn the_source_killed_mid_migration_starts_nothing_and_says_a_person_must_look() {
    let _one = ONE_AT_A_TIME.lock();
    let mut pair = pair(256, 50);
    let tool = Tool::start(pair.dir(), &precopy_plan(&pair, ""));
    source_sent(&pair, 16 << 20);
    pair.source.kill();

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 4, "a person must look");
    assert_eq!(end.report["result"], "failed");
    assert_eq!(end.report["running_on"], "unknown");
    assert_eq!(end.reason(), "connection_lost");
    assert_eq!(end.report["reason"]["side"], "source");
    assert!(
        end.error().starts_with("source: connection lost"),
        "{}",
        end.error()
    );
    assert_eq!(end.report["source_state"], "gone");
    assert_eq!(end.report["destination_state"], "inmigrate");
    assert!(
        end.stderr.contains("never start the destination"),
        "the run says what not to do: {}",
        end.stderr
    );
    // The destination holds part of a VM: it was not started, and its incoming
    // migration failed.
    let dst = &pair.destination.observer_socket;
    assert_eq!(status(dst), "inmigrate");
    assert_eq!(migration(dst), "failed");
}

// 4a. The source's monitor connection closes mid-migration; QEMU lives on.
#[test]
fn a_closed_source_monitor_is_reconnected_to_cancel_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let proxy = MonitorProxy::start(&pair.dir().join("source-proxy.qmp"), &pair.source.qmp_socket);
    let plan = through(&precopy_plan(&pair, ""), &pair.source.qmp_socket, &proxy.path);
    let tool = Tool::start(pair.dir(), &plan);
    source_sent(&pair, 16 << 20);
    proxy.cut();

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 1);
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "connection_lost");
    assert_eq!(end.report["reason"]["side"], "source");
    assert_eq!(proxy.connections(), 2, "the tool connected once more");
    assert!(
        end.stderr.contains("connected to the source's monitor again"),
        "{}",
        end.stderr
    );
    assert_runs_only_on_the_source(&pair, "cancelled");
}

// 4b. The destination's monitor connection closes mid-migration; QEMU lives on.
#[test]
fn a_closed_destination_monitor_cancels_and_the_destination_is_asked_again() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let proxy = MonitorProxy::start(
        &pair.dir().join("destination-proxy.qmp"),
        &pair.destination.qmp_socket,
    );
    let plan = through(
        &precopy_plan(&pair, ""),
        &pair.destination.qmp_socket,
        &proxy.path,
    );
    let tool = Tool::start(pair.dir(), &plan);
    source_sent(&pair, 16 << 20);
    proxy.cut();

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 1);
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "connection_lost");
    assert_eq!(end.report["reason"]["side"], "destination");
    // Asked again over a new connection: waiting, not gone.
    assert_eq!(end.report["destination_state"], "inmigrate");
    assert_eq!(proxy.connections(), 2);
    assert_runs_only_on_the_source(&pair, "cancelled");
}

// 4c. The source's monitor cannot be reached again: the tool cannot cancel.
#[test]
fn a_source_monitor_lost_for_good_is_exit_4_and_recover_cancels_once_it_answers() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let path = pair.dir().join("source-proxy.qmp");
    let mut proxy = MonitorProxy::start(&path, &pair.source.qmp_socket);
    let plan = through(&precopy_plan(&pair, ""), &pair.source.qmp_socket, &path);
    let tool = Tool::start(pair.dir(), &plan);
    source_sent(&pair, 16 << 20);
    proxy.close();

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 4, "nobody can cancel: a person must look");
    assert_eq!(end.report["running_on"], "unknown");
    assert_eq!(end.reason(), "connection_lost");
    assert_eq!(end.report["reason"]["side"], "source");
    assert_eq!(end.report["source_state"], "gone");
    assert!(end.stderr.contains("vfio-migrate recover"), "{}", end.stderr);
    // QEMU carries on without anyone watching.
    let left = migration(&pair.source.observer_socket);
    assert!(
        ["active", "pre-switchover"].contains(&left.as_str()),
        "the migration runs on: {left}"
    );

    // Once the monitor can be reached again, `recover` cancels what nobody drives.
    let _back = MonitorProxy::start(&path, &pair.source.qmp_socket);
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .arg("--state-dir")
        .arg(pair.dir().join("state"))
        .args(["--output", "json", "recover"])
        .arg(pair.dir().join("plan.toml"))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("recover");
    let repair: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(out.status.code(), Some(0), "{repair:#}");
    assert_eq!(repair["found_placement"]["kind"], "in_progress");
    assert_eq!(repair["running_on"], "source");
    assert_runs_only_on_the_source(&pair, "cancelled");
    // The run could not put its settings back; its journal said so, and recover did.
    let done = repair["done"].to_string();
    assert!(done.contains("put back the migration settings"), "{repair:#}");
    let caps = common::qmp(&pair.source.observer_socket, "query-migrate-capabilities");
    let on: Vec<&str> = caps
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"] == true)
        .filter_map(|c| c["capability"].as_str())
        .collect();
    assert!(on.is_empty(), "capabilities left on at the source: {on:?}");
}

// 5a. The destination frozen longer than the command timeout, then continued in time.
#[test]
fn a_destination_frozen_past_the_command_timeout_then_continued_is_migrated_to() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 20);
    let tool = Tool::start(pair.dir(), &converging_plan(&pair, "120s"));
    source_reaches(&pair, "active", Duration::from_secs(20));
    signal(pair.destination.pid(), "STOP");
    let frozen = Instant::now();
    std::thread::sleep(COMMAND_TIMEOUT + Duration::from_secs(2));
    assert_eq!(
        migration(&pair.source.observer_socket),
        "active",
        "the stream waits for the frozen destination"
    );
    signal(pair.destination.pid(), "CONT");
    eprintln!("destination frozen for {:?}", frozen.elapsed());

    let end = tool.end(Duration::from_secs(120));
    assert_eq!(end.code, 0, "migrated once the destination went on");
    assert_eq!(end.report["running_on"], "destination");
    assert_eq!(status(&pair.destination.observer_socket), "running");
    assert_eq!(status(&pair.source.observer_socket), "postmigrate");
    assert_guest_alive(&pair.destination);
}

// 5b. The destination frozen through the deadline and to the end of the run.
#[test]
fn a_destination_frozen_through_the_deadline_is_aborted_by_the_policy_not_called_gone() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let tool = Tool::start(pair.dir(), &converging_plan(&pair, "15s"));
    source_reaches(&pair, "active", Duration::from_secs(20));
    signal(pair.destination.pid(), "STOP");
    let frozen = Instant::now();
    // The deadline cancels; recovery then asks the destination, which does not answer.
    let end = tool.end(Duration::from_secs(90));
    let held = frozen.elapsed();
    signal(pair.destination.pid(), "CONT");
    assert!(held > COMMAND_TIMEOUT, "frozen for {held:?}");

    assert_eq!(end.code, 1);
    assert_eq!(end.report["result"], "aborted");
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "policy");
    assert_eq!(end.report["reason"]["abort"]["kind"], "deadline");
    let dst = end.report["destination_state"].as_str().unwrap_or_default();
    assert!(dst.starts_with("not answering"), "frozen is not gone: {dst}");
    assert_runs_only_on_the_source(&pair, "cancelled");
}

// 6. The migration stream stops moving (a proxy stops forwarding, connections open).
#[test]
fn a_stalled_stream_is_aborted_at_the_deadline_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let proxy = StreamProxy::stalling_after(pair.migration_port, 32 << 20);
    let plan = format!(
        "{}[migration]\nuri = \"{}\"\n",
        converging_plan(&pair, "15s"),
        proxy.uri()
    );
    let tool = Tool::start(pair.dir(), &plan);
    let stalled = wait_for(
        &pair.source.observer_socket,
        "query-migrate",
        Duration::from_secs(30),
        |_| proxy.is_stalled(),
    );
    assert!(proxy.is_stalled(), "the stream stalled: {stalled}");

    let end = tool.end(Duration::from_secs(60));
    assert_eq!(end.code, 1);
    assert_eq!(end.report["result"], "aborted");
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "policy");
    assert_eq!(end.report["reason"]["abort"]["kind"], "deadline");
    assert_eq!(proxy.forwarded(), 32 << 20, "nothing passed after the stall");
    assert_eq!(status(&pair.destination.observer_socket), "inmigrate");
    assert_runs_only_on_the_source(&pair, "cancelled");
}

// 7a. The destination does not listen, and the plan does not make it.
#[test]
fn a_destination_that_does_not_listen_is_not_ready_and_nothing_is_changed() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 10);
    let plan = format!(
        "{}[migration]\nuri = \"tcp:127.0.0.1:{}\"\n",
        plan_for(&pair, "", "escalation = [\"abort\"]").replace(
            &format!("listen = \"tcp:127.0.0.1:{}\"\n", pair.migration_port),
            ""
        ),
        pair.migration_port
    );
    let end = Tool::start(pair.dir(), &plan).end(Duration::from_secs(60));
    assert_eq!(end.code, 3, "hosts not ready");
    assert_eq!(end.reason(), "not_ready");
    let problems = end.report["reason"]["problems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        problems.iter().any(|p| p["kind"] == "destination_not_listening"),
        "{problems:?}"
    );
    assert!(end.error().contains("`listen`"), "says how: {}", end.error());
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(
        migration(&pair.source.observer_socket),
        "none",
        "nothing was started"
    );
    assert_eq!(status(&pair.source.observer_socket), "running");
    assert_eq!(status(&pair.destination.observer_socket), "inmigrate");
    assert_guest_alive(&pair.source);
}

// 7b. The destination listens, but the plan sends the stream where nobody does.
#[test]
fn a_stream_sent_where_nobody_listens_fails_at_once_and_the_source_runs() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 10);
    let nobody = closed_port();
    let plan = format!(
        "{}[migration]\nuri = \"tcp:127.0.0.1:{nobody}\"\n",
        plan_for(&pair, "", "escalation = [\"abort\"]")
    );
    let started = Instant::now();
    let end = Tool::start(pair.dir(), &plan).end(Duration::from_secs(60));
    eprintln!("ended after {:?}", started.elapsed());
    assert_eq!(end.code, 1);
    assert_eq!(end.report["result"], "failed");
    assert_eq!(end.report["running_on"], "source");
    assert_eq!(end.reason(), "migration_failed");
    assert!(
        end.error().contains("Connection refused"),
        "QEMU's words: {}",
        end.error()
    );
    assert_eq!(end.report["transferred_bytes"], 0, "nothing was sent");
    assert_runs_only_on_the_source(&pair, "failed");
}

/// The proxies used above forward what they are given; a sanity check of the tool's
/// view through one, so that a failure above is about the fault, not the proxy.
#[test]
fn a_migration_through_both_monitor_proxies_completes() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 10);
    let src = MonitorProxy::start(&pair.dir().join("src-proxy.qmp"), &pair.source.qmp_socket);
    let dst = MonitorProxy::start(&pair.dir().join("dst-proxy.qmp"), &pair.destination.qmp_socket);
    let plan = plan_for(&pair, "", "escalation = [\"abort\"]");
    let plan = through(&plan, &pair.source.qmp_socket, &src.path);
    let plan = through(&plan, &pair.destination.qmp_socket, &dst.path);
    let end = Tool::start(pair.dir(), &plan).end(Duration::from_secs(60));
    assert_eq!(end.code, 0);
    assert_eq!(end.report["running_on"], "destination");
    assert_guest_alive(&pair.destination);
}
