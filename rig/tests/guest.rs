//! Real QEMUs: the guest boots under the accelerator the rig picks, dirties memory at the
//! rate it was given, finds no lost writes, and a pair's QEMUs go away with the pair.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rig::{Accel, GuestParams, PairOptions, QemuPair, RigError};

/// One test at a time: the rate test measures wall-clock pacing, and other guests busy
/// on this machine's two CPUs would skew it; and a fork in another test while the
/// wrapper script below is still open for writing would make its exec fail (ETXTBSY).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn start(wss_mb: u32, rate_mb: u32, accel: Accel) -> QemuPair {
    let t = Instant::now();
    let pair = QemuPair::start(&PairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        accel,
        ..PairOptions::default()
    })
    .unwrap_or_else(|e| panic!("start a pair: {e}"));
    eprintln!(
        "pair up in {:?} ({} -cpu {}, dirty ring {})",
        t.elapsed(),
        pair.accel.kind,
        pair.accel.cpu,
        pair.accel.dirty_ring
    );
    pair
}

fn alive(pid: u32) -> bool {
    // An unreaped (zombie) QEMU still has a /proc entry: "gone" means reaped.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn an_idle_pair_starts_and_dropping_it_kills_both_qemus() {
    let _one = one_at_a_time();
    let pair = start(64, 0, Accel::Auto);
    assert!(pair.source.qmp_socket.exists(), "source QMP socket");
    assert!(pair.destination.qmp_socket.exists(), "destination QMP socket");
    assert_ne!(pair.source.qmp_socket, pair.destination.qmp_socket);
    assert!(pair.source.serial().contains("READY wss_mb=64 rate_mb=0\n"));
    assert_ne!(pair.migration_port, 0);
    assert!(["kvm", "tcg"].contains(&pair.accel.kind.as_str()));

    // Idle: the guest keeps time but writes nothing after its initial fill.
    let hb = pair
        .source
        .wait_for_heartbeat_after(0, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((hb.t, hb.rate_mb, hb.errors, hb.pages), (1, 0, 0, 0), "{hb:?}");
    // The destination is paused (-S) waiting for an incoming migration: no guest output.
    assert_eq!(pair.destination.serial(), "");
    assert!(pair.destination.is_running());

    let pids = [pair.source.pid(), pair.destination.pid()];
    assert!(pids.iter().all(|&p| alive(p)), "both QEMUs run: {pids:?}");
    let dir = pair.dir().to_path_buf();
    let t = Instant::now();
    drop(pair);
    eprintln!("pair dropped in {:?}", t.elapsed());
    for pid in pids {
        assert!(!alive(pid), "QEMU {pid} is still there after the drop");
    }
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[test]
fn the_guest_dirties_at_the_requested_rate_without_errors() {
    let _one = one_at_a_time();
    let pair = start(64, 100, Accel::Auto);
    let last = pair
        .source
        .wait_for_heartbeat_after(3, Duration::from_secs(8))
        .unwrap_or_else(|e| panic!("{e}"));
    let beats = pair.source.heartbeats();
    eprintln!("{}", pair.source.serial());
    assert_eq!(last.errors, 0, "lost writes: {last:?}");
    for (i, hb) in beats.iter().enumerate() {
        assert_eq!(hb.t, i as u64 + 1, "one heartbeat a second: {beats:?}");
        assert!(
            (85..=115).contains(&hb.rate_mb),
            "rate {} for 100: {beats:?}",
            hb.rate_mb
        );
    }
    // 100 MiB/s is 25600 pages of 4 KiB a second.
    let per_second = last.pages as f64 / last.t as f64;
    assert!(
        (21_760.0..=29_440.0).contains(&per_second),
        "{per_second} pages/s"
    );
    // The destination has not run a single guest instruction.
    assert!(pair.destination.heartbeats().is_empty());
}

#[test]
fn the_guest_runs_under_tcg_too() {
    let _one = one_at_a_time();
    let pair = start(32, 20, Accel::Tcg);
    assert_eq!(pair.accel.kind, "tcg");
    assert!(!pair.accel.dirty_ring, "the dirty ring is KVM's");
    let hb = pair
        .source
        .wait_for_heartbeat_after(1, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hb.errors, 0);
    assert!((17..=23).contains(&hb.rate_mb), "{hb:?}");
}

#[test]
fn a_missing_qemu_is_reported_with_its_side_and_command_line() {
    let _one = one_at_a_time();
    let err = QemuPair::start(&PairOptions {
        accel: Accel::Tcg,
        qemu: "/nonexistent/qemu-system-x86_64".into(),
        ..PairOptions::default()
    })
    .err();
    match err {
        Some(RigError::Spawn { side, command, .. }) => {
            assert_eq!(side, "source");
            assert!(
                command.starts_with("/nonexistent/qemu-system-x86_64 -machine pc"),
                "{command}"
            );
            assert!(command.contains("-append 'wss_mb=64 rate_mb=0'"), "{command}");
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[test]
fn a_working_set_beyond_the_guest_s_counters_is_refused() {
    let _one = one_at_a_time();
    let err = QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: rig::MAX_WSS_MB + 1,
            rate_mb: 0,
        },
        ..PairOptions::default()
    })
    .err();
    assert!(matches!(err, Some(RigError::Options(_))), "{err:?}");
}

#[test]
fn auto_falls_back_to_tcg_when_kvm_does_not_start() {
    let _one = one_at_a_time();
    // A QEMU that refuses KVM, as a host without a usable KVM would: probing must end
    // at TCG and the pair must run there. `exec` keeps the pid, so the rig still owns it.
    let dir = tempfile::tempdir().expect("tempdir");
    let qemu = dir.path().join("qemu-without-kvm");
    std::fs::write(
        &qemu,
        "#!/bin/sh\ncase \"$*\" in *-accel\\ kvm*) echo 'kvm refused by the test' >&2; exit 1;; esac\n\
         exec qemu-system-x86_64 \"$@\"\n",
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let pair = QemuPair::start(&PairOptions {
        accel: Accel::Auto,
        qemu,
        ..PairOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (pair.accel.kind.as_str(), pair.accel.cpu.as_str()),
        ("tcg", "qemu64")
    );
    assert!(pair.source.serial().starts_with("READY"));

    // Asking for KVM only with that QEMU fails, saying what each candidate did.
    let err = QemuPair::start(&PairOptions {
        accel: Accel::Kvm,
        qemu: dir.path().join("qemu-without-kvm"),
        ..PairOptions::default()
    })
    .err();
    match err {
        Some(RigError::NoAccelerator { tried }) => {
            assert!(tried.contains("kvm -cpu host,-arch-capabilities"), "{tried}");
            assert!(tried.contains("kvm refused by the test"), "{tried}");
        }
        other => panic!("expected NoAccelerator, got {other:?}"),
    }
}
