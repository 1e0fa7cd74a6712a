//! `vfio-migrate check` against real QEMU pairs: it reads both sides, changes nothing,
//! and every way a pair can be not ready produces its own failing row.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{check, pair, plan_for, qmp, row, ONE_AT_A_TIME};
use rig::{Accel, GuestParams, PairOptions, QemuPair};
use serde_json::Value;

/// Everything a check could change on one QEMU: capabilities, parameters, run state and
/// migration status.
fn settings(socket: &Path) -> Vec<Value> {
    [
        "query-migrate-capabilities",
        "query-migrate-parameters",
        "query-status",
        "query-migrate",
    ]
    .iter()
    .map(|command| qmp(socket, command))
    .collect()
}

fn start_pair(options: PairOptions) -> QemuPair {
    QemuPair::start(&PairOptions {
        accel: Accel::Auto,
        dirty_ring: true,
        ..options
    })
    .expect("start the QEMU pair")
}

const LIMITS: &str = "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"";

#[test]
fn a_check_of_a_ready_pair_changes_nothing_and_predicts_convergence() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 50);
    let plan = plan_for(&pair, LIMITS, "escalation = [\"abort\"]");
    let before = [
        settings(&pair.source.observer_socket),
        settings(&pair.destination.observer_socket),
    ];

    let (code, answer) = check(pair.dir(), &plan);

    let after = [
        settings(&pair.source.observer_socket),
        settings(&pair.destination.observer_socket),
    ];
    assert_eq!(
        before, after,
        "check changed a setting, a run state or a migration status"
    );
    assert_eq!(code, 0, "{answer:#}");
    for key in ["changed", "failed"] {
        assert_eq!(answer[key], false, "{key}");
    }
    assert_eq!(answer["rc"], 0);
    assert!(answer["msg"].as_str().is_some_and(|m| m.starts_with("ready")));
    for id in [
        "plan.valid",
        "source.reachable",
        "destination.reachable",
        "vm.placement",
        "destination.incoming",
        "vm.ram",
        "vm.machine",
        "source.blockers",
        "capability.pause-before-switchover",
    ] {
        assert_eq!(row(&answer, id)["status"], "pass", "{id}");
    }
    assert_eq!(answer["would_change"], true);
    assert!(
        answer["measured"]["bytes_per_sec"].as_u64().is_some(),
        "a dirty rate was measured"
    );
    assert_eq!(answer["prediction"]["forecast"]["kind"], "converges");
    assert_eq!(row(&answer, "predict.outcome")["status"], "pass");
}

#[test]
fn an_unreachable_destination_fails_its_row_and_the_source_is_still_checked() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let gone = pair.dir().join("no-such-monitor.qmp");
    let plan = plan_for(&pair, LIMITS, "").replace(
        &pair.destination.qmp_socket.display().to_string(),
        &gone.display().to_string(),
    );
    let (code, answer) = check(pair.dir(), &plan);
    assert_eq!(code, 3);
    assert_eq!(answer["failed"], true);
    assert_eq!(row(&answer, "destination.reachable")["status"], "fail");
    assert!(row(&answer, "destination.reachable")["finding"]
        .as_str()
        .is_some_and(|f| f.contains("no-such-monitor.qmp")));
    assert_eq!(row(&answer, "source.reachable")["status"], "pass");
    assert_eq!(row(&answer, "source.blockers")["status"], "pass");
}

/// A QEMU like the pair's destination but started without `-incoming`: paused, and
/// waiting for nothing.
fn not_incoming(dir: &Path, mem_mb: u32) -> (Child, std::path::PathBuf) {
    let socket = dir.join("not-incoming.qmp");
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-m",
            &mem_mb.to_string(),
            "-S",
            "-display",
            "none",
            "-nodefaults",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start QEMU");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, socket)
}

#[test]
fn a_destination_that_waits_for_no_migration_is_not_ready() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let (mut qemu, socket) = not_incoming(pair.dir(), 1024);
    let plan = plan_for(&pair, LIMITS, "").replace(
        &pair.destination.qmp_socket.display().to_string(),
        &socket.display().to_string(),
    );
    let (code, answer) = check(pair.dir(), &plan);
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert_eq!(code, 3, "{answer:#}");
    let incoming = row(&answer, "destination.incoming");
    assert_eq!(incoming["status"], "fail");
    assert!(
        incoming["finding"]
            .as_str()
            .is_some_and(|f| f.contains("not waiting")),
        "{incoming}"
    );
    assert!(incoming["hint"]
        .as_str()
        .is_some_and(|h| h.contains("-incoming defer")));
}

#[test]
fn a_migration_blocker_is_quoted_verbatim() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let shm = dir.path().join("ivshmem");
    let pair = start_pair(PairOptions {
        guest: GuestParams {
            wss_mb: 64,
            rate_mb: 0,
        },
        source_args: vec![
            "-object".into(),
            format!(
                "memory-backend-file,id=shm,size=1M,mem-path={},share=on",
                shm.display()
            ),
            "-device".into(),
            "ivshmem-plain,memdev=shm".into(),
        ],
        ..PairOptions::default()
    });
    let (code, answer) = check(pair.dir(), &plan_for(&pair, LIMITS, ""));
    assert_eq!(code, 3);
    let blocked = row(&answer, "source.blockers");
    assert_eq!(blocked["status"], "fail");
    assert_eq!(
        blocked["finding"],
        "QEMU blocks migration: Migration is disabled when using feature 'peer mode' in device 'ivshmem'"
    );
}

#[test]
fn guest_ram_that_differs_between_the_sides_is_not_ready() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = start_pair(PairOptions {
        guest: GuestParams {
            wss_mb: 64,
            rate_mb: 0,
        },
        destination_mem_mb: Some(512),
        ..PairOptions::default()
    });
    let (code, answer) = check(pair.dir(), &plan_for(&pair, LIMITS, ""));
    assert_eq!(code, 3);
    let ram = row(&answer, "vm.ram");
    assert_eq!(ram["status"], "fail");
    assert_eq!(
        ram["finding"],
        "guest RAM differs: source 1024 MiB, destination 512 MiB"
    );
}

#[test]
fn a_guest_dirtying_faster_than_the_link_under_an_abort_policy_is_predicted_not_to_meet_the_limits() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(256, 200);
    let (code, answer) = check(pair.dir(), &plan_for(&pair, LIMITS, "escalation = [\"abort\"]"));
    assert_eq!(code, 3, "{answer:#}");
    let outcome = row(&answer, "predict.outcome");
    assert_eq!(outcome["status"], "fail");
    assert!(
        outcome["finding"]
            .as_str()
            .is_some_and(|f| f.contains("is not below bandwidth 128MiB/s")),
        "{outcome}"
    );
    assert_eq!(answer["prediction"]["forecast"]["kind"], "cannot_meet_limits");
}
