//! Real libvirt: two private daemons run side by side on this machine, the rig's guest
//! boots as a domain on one, `virsh migrate --live --p2p` moves it to the other without
//! losing a write, and dropping the pair leaves none of its processes behind.
//!
//! Without libvirt (or without root) the test says it is skipped and passes, except under
//! `CI_REQUIRE_LIBVIRT=1` (set by `.ci/run`, whose `scripts/install-deps` installs libvirt),
//! where that is a failure.

use std::path::Path;
use std::time::{Duration, Instant};

use rig::{GuestParams, LibvirtPair, LibvirtPairOptions, RigError};

/// Starts a pair, or returns `None` (test skipped) where libvirt cannot run.
fn start(opts: &LibvirtPairOptions) -> Option<LibvirtPair> {
    let t = Instant::now();
    let pair = LibvirtPair::start_or_skip(opts)?;
    eprintln!(
        "libvirt pair up in {:?}: daemons answered in {:?} and {:?}, domain booted in {:?} \
         ({} -cpu {}, dirty ring {})",
        t.elapsed(),
        pair.source.started_in(),
        pair.destination.started_in(),
        pair.booted_in(),
        pair.accel.kind,
        pair.accel.cpu,
        pair.accel.dirty_ring
    );
    Some(pair)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Fails with both daemons' logs attached.
fn check<T>(pair: &LibvirtPair, what: &str, result: Result<T, RigError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}\n{}", pair.diagnostics()))
}

#[test]
fn a_domain_migrates_live_between_two_private_daemons_without_losing_a_write() {
    let Some(pair) = start(&LibvirtPairOptions {
        guest: GuestParams {
            wss_mb: 64,
            rate_mb: 20,
        },
        ..LibvirtPairOptions::default()
    }) else {
        return;
    };
    let domain = pair.domain().to_string();
    let (source, destination) = (&pair.source, &pair.destination);

    // Two daemons, two hosts as far as libvirt is concerned.
    assert_ne!(source.uri(), destination.uri());
    assert_ne!(source.host_uuid(), destination.host_uuid());
    for daemon in [source, destination] {
        let capabilities = check(&pair, "virsh capabilities", daemon.virsh(&["capabilities"]));
        assert!(
            capabilities.contains(&format!("<uuid>{}</uuid>", daemon.host_uuid())),
            "the {} daemon reports its own host UUID",
            daemon.side()
        );
    }
    let (s, d) = (source.migration_ports(), destination.migration_ports());
    assert!(
        s.end() < d.start() || d.end() < s.start(),
        "{s:?} and {d:?} overlap"
    );

    // The guest runs on the source, and only there.
    assert!(source.serial(&domain).starts_with("READY wss_mb=64 rate_mb=20\n"));
    let hb = check(
        &pair,
        "a heartbeat on the source",
        source.wait_for_heartbeat_after(&domain, 1, Duration::from_secs(5)),
    );
    assert_eq!(hb.errors, 0, "{hb:?}");
    assert_eq!(check(&pair, "domstate", source.domain_state(&domain)), "running");
    assert!(
        destination.domain_state(&domain).is_err(),
        "the destination does not know it yet"
    );

    // libvirt moves it, talking daemon to daemon.
    let t = Instant::now();
    let out = check(
        &pair,
        "virsh migrate",
        source.virsh(&[
            "migrate",
            "--live",
            "--p2p",
            "--verbose",
            "--bandwidth",
            "200",
            &domain,
            destination.uri(),
        ]),
    );
    eprintln!("migrated in {:?}: {}", t.elapsed(), out.trim());

    assert_eq!(
        check(&pair, "domstate", destination.domain_state(&domain)),
        "running"
    );
    // The source keeps the (persistent) definition, shut off.
    assert_eq!(check(&pair, "domstate", source.domain_state(&domain)), "shut off");
    let listed = check(&pair, "virsh list", source.virsh(&["list", "--name"]));
    assert!(
        !listed.contains(&domain),
        "the source lists it as running: {listed}"
    );

    // The guest goes on where it was: its clock continues and no page lost a write.
    let before = source.heartbeats(&domain);
    let last_on_source = before.last().copied();
    let after = check(
        &pair,
        "heartbeats on the destination",
        destination.wait_for_heartbeat_after(&domain, 2, Duration::from_secs(10)),
    );
    let beats = destination.heartbeats(&domain);
    assert!(
        !destination.serial(&domain).contains("READY"),
        "it did not boot again"
    );
    assert!(beats.iter().all(|hb| hb.errors == 0), "lost writes: {beats:?}");
    if let Some(last) = last_on_source {
        assert!(beats[0].t > last.t, "time goes on: {last:?} then {beats:?}");
        assert!(after.pages > last.pages, "writes go on: {last:?} then {after:?}");
    }

    // Dropping the pair kills both daemons and the QEMU, wherever it is.
    let pids: Vec<u32> = source.pids().into_iter().chain(destination.pids()).collect();
    assert!(
        pids.len() >= 5,
        "unshare, init and libvirtd per daemon, and a QEMU: {pids:?}"
    );
    let trees = [source.tree().to_path_buf(), destination.tree().to_path_buf()];
    let t = Instant::now();
    drop(pair);
    eprintln!("libvirt pair dropped in {:?}", t.elapsed());
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still there after the drop");
    }
    for tree in trees {
        assert!(!tree.exists(), "{} is removed", tree.display());
    }
}
