//! The guest boots under the accelerator the rig picks, dirties memory at the rate it
//! was given, finds no lost writes, and a pair's QEMUs go away with the pair.

use std::time::Duration;

use rig::{Accel, GuestParams, PairOptions, QemuPair};

#[test]
fn the_guest_dirties_at_the_requested_rate_without_errors() {
    let pair = QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: 64,
            rate_mb: 100,
        },
        accel: Accel::Auto,
        ..PairOptions::default()
    })
    .expect("pair");
    let hb = pair
        .source
        .wait_for_heartbeat_after(2, Duration::from_secs(10))
        .expect("three heartbeats");
    assert_eq!(hb.errors, 0);
    assert!(
        (85..=115).contains(&hb.rate_mb),
        "rate {} MiB/s for a requested 100",
        hb.rate_mb
    );
    assert!(
        pair.destination.heartbeats().is_empty(),
        "the destination waits, paused"
    );
}

#[test]
fn dropping_a_pair_kills_both_qemus() {
    let pair = QemuPair::start(&PairOptions::default()).expect("pair");
    let pids: Vec<u32> = [pair.source.pid(), pair.destination.pid()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(pids.len(), 2);
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    let dir = pair.dir().to_path_buf();
    drop(pair);
    for pid in &pids {
        // A reaped process leaves no /proc entry.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "QEMU {pid} still there"
        );
    }
    assert!(!dir.exists(), "the temporary directory is removed");
}
