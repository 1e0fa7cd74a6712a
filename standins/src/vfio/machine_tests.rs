//! QEMU's transitions, one device at a time.

use engine::driver::DeviceState::{self, *};

use super::*;

const STOP: [Step; 2] = [Step::Prepare, Step::RunState { running: false }];
const START: [Step; 2] = [Step::Prepare, Step::RunState { running: true }];

fn device(precopy: bool, p2p: bool) -> ModelDevice {
    ModelDevice {
        precopy,
        p2p,
        ..ModelDevice::new("dev0")
    }
}

/// The states a device reports through `phases` of steps, from `running`.
fn walk(device: &ModelDevice, phases: &[&[Step]]) -> Vec<DeviceState> {
    let mut machine = StateMachine::new();
    let steps = phases.iter().flat_map(|phase| phase.iter());
    steps.filter_map(|step| machine.apply(device, *step)).collect()
}

/// A migration that completes, from setup to cleanup.
const MIGRATION: &[&[Step]] = &[
    &[Step::SaveSetup],
    &STOP,
    &[Step::SaveComplete, Step::SaveCleanup],
];

#[test]
fn a_vm_stop_or_start_is_a_prepare_then_a_change() {
    assert_eq!(run_state_change(false), STOP);
    assert_eq!(run_state_change(true), START);
}

#[test]
fn a_precopy_device_saves_from_setup_and_stops_into_stop_copy() {
    assert_eq!(walk(&device(true, false), MIGRATION), [PreCopy, StopCopy, Stop]);
}

#[test]
fn a_stop_copy_only_device_waits_for_the_device_stage() {
    assert_eq!(walk(&device(false, false), MIGRATION), [Stop, StopCopy, Stop]);
}

#[test]
fn p2p_devices_pass_through_their_p2p_state_on_every_run_state_change() {
    let saving = [PreCopy, PreCopyP2p, StopCopy, Stop];
    assert_eq!(walk(&device(true, true), MIGRATION), saving);
    assert_eq!(
        walk(&device(false, true), MIGRATION),
        [RunningP2p, Stop, StopCopy, Stop]
    );
    let loading: &[&[Step]] = &[&[Step::LoadSetup], &START];
    assert_eq!(
        walk(&device(false, true), loading),
        [Resuming, RunningP2p, Running]
    );
    assert_eq!(walk(&device(false, false), loading), [Resuming, Running]);
}

#[test]
fn a_device_of_a_paused_vm_does_not_enter_precopy() {
    let paused: &[&[Step]] = &[&STOP, &[Step::SaveSetup, Step::SaveComplete]];
    assert_eq!(walk(&device(true, false), paused), [Stop, StopCopy]);
}

#[test]
fn a_failed_migration_returns_the_device_to_running_even_while_stopped() {
    let failed: &[&[Step]] = &[&[Step::SaveSetup], &STOP, &[Step::PrecopyFailed]];
    assert_eq!(walk(&device(true, false), failed), [PreCopy, StopCopy, Running]);
}

#[test]
fn cleanup_only_moves_a_device_in_stop_copy() {
    let early: &[&[Step]] = &[&[Step::SaveSetup, Step::SaveCleanup]];
    assert_eq!(walk(&device(true, false), early), [PreCopy]);
}

#[test]
fn a_step_to_the_current_state_reports_nothing() {
    let dev = device(true, true);
    let mut machine = StateMachine::new();
    assert_eq!(machine.next(&dev, Step::RunState { running: true }), None);
    assert_eq!(machine.apply(&dev, Step::SaveSetup), Some(PreCopy));
    assert_eq!(machine.apply(&dev, Step::SaveSetup), None);
    assert_eq!(machine.current(), &PreCopy);
    assert!(machine.is_precopy());
}
