//! QEMU's transitions, one device at a time.

use engine::driver::DeviceState::{self, *};

use super::*;

fn device(precopy: bool, p2p: bool) -> ModelDevice {
    ModelDevice {
        precopy,
        p2p,
        ..ModelDevice::new("dev0")
    }
}

/// The states a device reports through `steps`, from `running`.
fn walk(device: &ModelDevice, steps: &[Step]) -> Vec<DeviceState> {
    let mut machine = StateMachine::new();
    steps
        .iter()
        .filter_map(|step| machine.apply(device, *step))
        .collect()
}

fn stop() -> [Step; 2] {
    run_state_change(false)
}

fn start() -> [Step; 2] {
    run_state_change(true)
}

#[test]
fn a_precopy_device_saves_from_setup_and_stops_into_stop_copy() {
    let [prepare, stopped] = stop();
    let steps = [
        Step::SaveSetup,
        prepare,
        stopped,
        Step::SaveComplete,
        Step::SaveCleanup,
    ];
    assert_eq!(walk(&device(true, false), &steps), [PreCopy, StopCopy, Stop]);
}

#[test]
fn a_stop_copy_only_device_waits_for_the_device_stage() {
    let [prepare, stopped] = stop();
    let steps = [
        Step::SaveSetup,
        prepare,
        stopped,
        Step::SaveComplete,
        Step::SaveCleanup,
    ];
    assert_eq!(walk(&device(false, false), &steps), [Stop, StopCopy, Stop]);
}

#[test]
fn p2p_devices_pass_through_their_p2p_state_on_every_run_state_change() {
    let [prepare, stopped] = stop();
    let steps = [Step::SaveSetup, prepare, stopped];
    assert_eq!(walk(&device(true, true), &steps), [PreCopy, PreCopyP2p, StopCopy]);
    assert_eq!(walk(&device(false, true), &steps), [RunningP2p, Stop]);
    let [prepare, started] = start();
    let steps = [Step::LoadSetup, prepare, started];
    assert_eq!(
        walk(&device(false, true), &steps),
        [Resuming, RunningP2p, Running]
    );
    assert_eq!(walk(&device(false, false), &steps), [Resuming, Running]);
}

#[test]
fn a_device_of_a_paused_vm_does_not_enter_precopy() {
    let [prepare, stopped] = stop();
    let steps = [prepare, stopped, Step::SaveSetup, Step::SaveComplete];
    assert_eq!(walk(&device(true, false), &steps), [Stop, StopCopy]);
}

#[test]
fn a_failed_migration_returns_the_device_to_running_even_while_stopped() {
    let [prepare, stopped] = stop();
    let steps = [Step::SaveSetup, prepare, stopped, Step::PrecopyFailed];
    assert_eq!(walk(&device(true, false), &steps), [PreCopy, StopCopy, Running]);
}

#[test]
fn cleanup_only_moves_a_device_in_stop_copy() {
    assert_eq!(
        walk(&device(true, false), &[Step::SaveSetup, Step::SaveCleanup]),
        [PreCopy]
    );
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
