//! Devices that misbehave, and what the engine makes of it: every fault ends with the VM
//! where the report says it is, and the saving gate keeps decisions back until every
//! device is saving.

#[path = "sim_support.rs"]
mod support;

use std::time::Duration;

use engine::driver::{MigrationStatus, RunState, Side};
use engine::gate::GateViolation;
use engine::{Outcome, Reason, RunningOn};
use standins::sim::MIB;
use standins::vfio::{Fault, ModelDevice};
use support::{describe, device, device_toml, plan, run, vm, with_devices};

/// One pre-copy device `gpu0` (4 MiB of state) with `fault`, and a plan for it.
fn gpu(fault: Fault, limits: &str) -> (plans::Plan, standins::sim::SimVm, &'static str) {
    let plan = plan(&format!(
        "{}[limits]\nmax_bandwidth = \"128MiB/s\"\n{limits}",
        device_toml("gpu0", true, "4MiB")
    ));
    let vm = with_devices(
        vm(512, 20),
        vec![ModelDevice {
            fault,
            ..device("gpu0", true, 4 * MIB)
        }],
    );
    (plan, vm, "gpu0")
}

#[tokio::test(start_paused = true)]
async fn a_device_that_never_saves_is_aborted_after_the_saving_timeout() {
    let (plan, vm, id) = gpu(Fault::NeverSaving, "saving_timeout = \"5s\"\n");
    let run = run(&plan, vm).await;
    let r = &run.report;
    assert_eq!(r.result, Outcome::Aborted, "{}", describe(&run));
    assert_eq!(r.running_on, RunningOn::Source);
    match &r.reason {
        Some(Reason::Device {
            violation: GateViolation::NotSaving {
                device, timeout_ms, ..
            },
        }) => assert_eq!((device.as_str(), *timeout_ms), (id, 5000)),
        other => panic!("expected the saving timeout, got {other:?}"),
    }
    // QEMU waited for switchover-ack, which a device that never saves never sends.
    assert!(r.total_ms >= 5_000, "{}", describe(&run));
    assert_eq!(run.sim.run_state(Side::Source), RunState::Running);
    assert_eq!(run.sim.migration_status(), MigrationStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn an_error_while_saving_fails_the_migration_and_the_source_keeps_running() {
    let after = Duration::from_secs(2);
    let (plan, vm, id) = gpu(Fault::ErrorInPrecopy { after }, "");
    let run = run(&plan, vm).await;
    let r = &run.report;
    assert_eq!(r.result, Outcome::Failed, "{}", describe(&run));
    assert_eq!(r.running_on, RunningOn::Source);
    assert_eq!(r.rc, 1);
    assert_eq!(
        r.reason,
        Some(Reason::MigrationFailed {
            during_switchover: false,
            qemu_error: Some(format!("vfio: error while saving device {id} state")),
        })
    );
    assert_eq!(run.sim.run_state(Side::Source), RunState::Running);
    assert_eq!(run.sim.migration_status(), MigrationStatus::Failed);
    assert_eq!(
        run.sim.device_state(Side::Source, id),
        Some(engine::driver::DeviceState::Running)
    );
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_device_stops_the_migration() {
    let after = Duration::from_secs(1);
    let (plan, vm, id) = gpu(Fault::UnplugDuringMigration { after }, "");
    let run = run(&plan, vm).await;
    let r = &run.report;
    assert_eq!(r.result, Outcome::Aborted, "{}", describe(&run));
    assert_eq!(r.running_on, RunningOn::Source);
    assert_eq!(
        r.reason,
        Some(Reason::Device {
            violation: GateViolation::Unplugged {
                device: id.to_string(),
                at_ms: 1000,
            }
        })
    );
    assert_eq!(run.sim.run_state(Side::Source), RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_device_whose_events_never_come_counts_as_not_saving() {
    let (plan, vm, id) = gpu(Fault::EventsMissing, "saving_timeout = \"2s\"\n");
    let run = run(&plan, vm).await;
    let r = &run.report;
    assert_eq!(r.result, Outcome::Aborted, "{}", describe(&run));
    assert_eq!(r.running_on, RunningOn::Source);
    match &r.reason {
        Some(Reason::Device {
            violation: GateViolation::NotSaving {
                device, seen_at_ms, ..
            },
        }) => assert_eq!(
            (device.as_str(), *seen_at_ms),
            (id, None),
            "no event was received"
        ),
        other => panic!("expected not saving, got {other:?}"),
    }
    // The device did reach pre-copy; only its events were missing.
    let device = r
        .devices
        .iter()
        .find(|d| d.id == id)
        .expect("device in the report");
    assert!(device.timeline.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_stop_copy_migrates_with_a_longer_pause() {
    let fast = gpu(Fault::None, "");
    let slow = gpu(Fault::SlowStopCopy(Duration::from_secs(2)), "");
    let fast = run(&fast.0, fast.1).await;
    let slow = run(&slow.0, slow.1).await;
    for run in [&fast, &slow] {
        assert_eq!(run.report.result, Outcome::Migrated, "{}", describe(run));
        assert_eq!(run.sim.guest_pages_lost(), 0);
    }
    let downtime = |r: &support::Run| r.report.downtime_ms.unwrap_or(0);
    let paused = |r: &support::Run| r.report.paused_ms.unwrap_or(0);
    assert!(downtime(&fast) <= 300, "{}", describe(&fast));
    assert!(downtime(&slow) >= downtime(&fast) + 2_000, "{}", describe(&slow));
    assert!(paused(&slow) >= downtime(&slow), "{}", describe(&slow));
    assert!(slow.sim.paused_total() >= Duration::from_millis(downtime(&slow)));
}

#[tokio::test(start_paused = true)]
async fn no_policy_action_comes_before_a_slow_device_is_saving() {
    let slow = Duration::from_secs(20);
    let plan = plan(&format!(
        "{}[limits]\nmax_bandwidth = \"128MiB/s\"\n[policy]\nescalation = [\"throttle\", \"abort\"]\n",
        device_toml("gpu0", true, "4MiB")
    ));
    let vm = with_devices(
        vm(256, 200),
        vec![ModelDevice {
            fault: Fault::SlowToSaving(slow),
            ..device("gpu0", true, 4 * MIB)
        }],
    );
    let run = run(&plan, vm).await;
    let r = &run.report;
    let device = r
        .devices
        .iter()
        .find(|d| d.id == "gpu0")
        .expect("device in the report");
    let saving_at = device.saving_at_ms.expect("the device reached pre-copy");
    assert!(saving_at >= slow.as_millis() as u64, "saving at {saving_at}ms");
    assert!(
        !r.actions.is_empty(),
        "the policy acted at some point: {}",
        describe(&run)
    );
    for action in &r.actions {
        assert!(
            action.at.as_millis() as u64 > saving_at,
            "action at {:?} before the device was saving at {saving_at}ms",
            action.at
        );
    }
    // Boundaries before the gate opened were recorded but not judged.
    assert!(r
        .pass_history
        .iter()
        .any(|p| (p.elapsed.as_millis() as u64) < saving_at));
    assert!(r.gate_opened_ms.is_some_and(|g| g >= saving_at));
}
