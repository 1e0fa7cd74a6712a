//! The saving gate as a specification: when it opens, and what stops a migration.

use std::time::Duration;

use engine::driver::DeviceState;
use engine::gate::{DeviceGate, Follow, GateViolation};
use tokio::time::Instant;

fn follow(id: &str, precopy: bool) -> Follow {
    Follow {
        id: id.to_string(),
        qom_path: format!("/machine/peripheral/{id}"),
        precopy,
        state_transfer: None,
    }
}

fn gate(devices: Vec<Follow>) -> (DeviceGate, Instant) {
    let t0 = Instant::now();
    (DeviceGate::new(devices, t0, Duration::from_secs(30)), t0)
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

#[test]
fn without_devices_the_gate_is_open_from_the_start() {
    let (g, _) = gate(vec![]);
    assert!(g.is_open());
}

#[test]
fn it_opens_only_when_the_last_precopy_device_is_saving() {
    let (mut g, t0) = gate(vec![follow("gpu0", true), follow("gpu1", true)]);
    g.on_state(
        "gpu0",
        "/machine/peripheral/gpu0",
        DeviceState::PreCopy,
        ms(t0, 5),
        "setup",
    )
    .expect("expected state");
    g.on_active(ms(t0, 10));
    assert!(!g.is_open(), "gpu1 is not saving yet");
    g.on_state(
        "",
        "/machine/peripheral/gpu1",
        DeviceState::PreCopy,
        ms(t0, 900),
        "active",
    )
    .expect("expected state; matched by QOM path when device-id is empty");
    assert!(g.is_open());
    assert_eq!(g.opened_at_ms(), Some(900));
}

#[test]
fn a_stop_copy_only_device_counts_once_the_migration_is_active() {
    let (mut g, t0) = gate(vec![follow("nic0", false)]);
    assert!(!g.is_open(), "in setup nothing is known yet");
    g.on_active(ms(t0, 40));
    assert!(g.is_open());
}

#[test]
fn a_device_that_never_saves_times_out_with_its_last_state() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    g.on_active(ms(t0, 10));
    assert_eq!(g.check_timeout(ms(t0, 29_999)), Ok(()));
    match g.check_timeout(ms(t0, 30_000)) {
        Err(GateViolation::NotSaving {
            device,
            last_state,
            seen_at_ms,
            timeout_ms,
        }) => {
            assert_eq!(device, "gpu0");
            assert_eq!(last_state, "running");
            assert_eq!(seen_at_ms, None, "no event ever came");
            assert_eq!(timeout_ms, 30_000);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn falling_back_to_running_after_precopy_stops_the_migration() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    g.on_state("gpu0", "", DeviceState::PreCopy, ms(t0, 5), "setup")
        .expect("ok");
    let err = g
        .on_state("gpu0", "", DeviceState::Running, ms(t0, 700), "active")
        .expect_err("running after pre-copy is an error or reset");
    assert!(
        matches!(err, GateViolation::UnexpectedState { ref state, at_ms: 700, .. } if state == "running")
    );
}

#[test]
fn stop_copy_is_saving_whenever_it_comes_but_running_after_it_is_not() {
    // QEMU sends the stop-copy events before STOP, so they cannot be checked against it.
    let (mut g, t0) = gate(vec![follow("nic0", false)]);
    g.on_state("nic0", "", DeviceState::StopCopy, ms(t0, 900), "active")
        .expect("saving");
    assert!(g.is_open());
    assert_eq!(g.check_switchover(), Ok(()));
    assert!(matches!(
        g.on_state("nic0", "", DeviceState::Running, ms(t0, 950), "active"),
        Err(GateViolation::UnexpectedState { .. })
    ));
}

#[test]
fn a_source_device_never_loads_state() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    assert!(g
        .on_state("gpu0", "", DeviceState::Resuming, ms(t0, 5), "setup")
        .is_err());
}

#[test]
fn at_switchover_every_device_must_be_in_stop_copy() {
    let (mut g, t0) = gate(vec![follow("gpu0", true), follow("nic0", false)]);
    g.on_state("gpu0", "", DeviceState::PreCopy, ms(t0, 5), "setup")
        .expect("ok");
    g.on_state("gpu0", "", DeviceState::StopCopy, ms(t0, 900), "active")
        .expect("ok");
    assert_eq!(
        g.check_switchover(),
        Err(GateViolation::NotStopCopyAtSwitchover {
            device: "nic0".into(),
            state: "running".into()
        })
    );
}

#[test]
fn unplugging_a_followed_device_stops_the_migration() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    assert!(matches!(
        g.on_deleted(Some("gpu0"), "/machine/peripheral/gpu0", ms(t0, 300)),
        Err(GateViolation::Unplugged { at_ms: 300, .. })
    ));
    assert_eq!(
        g.on_deleted(Some("other"), "/machine/peripheral/other", ms(t0, 300)),
        Ok(())
    );
}

#[test]
fn the_timeline_keeps_every_state_with_the_migration_status() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    g.on_state("gpu0", "", DeviceState::PreCopy, ms(t0, 5), "setup")
        .expect("ok");
    g.record("gpu0", "", DeviceState::StopCopy, ms(t0, 900), "pre-switchover");
    let r = g.report();
    let states: Vec<(&str, u64, &str)> = r[0]
        .timeline
        .iter()
        .map(|c| (c.state.as_str(), c.at_ms, c.migration_status.as_str()))
        .collect();
    assert_eq!(
        states,
        vec![("pre-copy", 5, "setup"), ("stop-copy", 900, "pre-switchover")]
    );
    assert_eq!(r[0].saving_at_ms, Some(5));
}

#[test]
fn at_switchover_a_stop_copy_only_device_waits_in_stop() {
    // QEMU's vfio_vmstate_change: only devices in pre-copy go straight to stop-copy when
    // the VM stops; the others go to stop and reach stop-copy in the `device` stage.
    let (mut g, t0) = gate(vec![follow("gpu0", true), follow("nic0", false)]);
    g.on_state("gpu0", "", DeviceState::PreCopy, ms(t0, 5), "setup")
        .expect("ok");
    g.on_active(ms(t0, 10));
    g.on_state("gpu0", "", DeviceState::StopCopy, ms(t0, 900), "active")
        .expect("ok");
    g.on_state("nic0", "", DeviceState::Stop, ms(t0, 900), "active")
        .expect("ok");
    assert_eq!(g.check_switchover(), Ok(()));
}

#[test]
fn at_switchover_a_precopy_device_in_stop_is_not_ready() {
    let (mut g, t0) = gate(vec![follow("gpu0", true)]);
    g.on_state("gpu0", "", DeviceState::PreCopy, ms(t0, 5), "setup")
        .expect("ok");
    g.on_state("gpu0", "", DeviceState::Stop, ms(t0, 900), "active")
        .expect("recorded");
    assert!(matches!(
        g.check_switchover(),
        Err(GateViolation::NotStopCopyAtSwitchover { .. })
    ));
}
