//! The simulated VFIO devices on both sides: [`crate::vfio`]'s state machine per side,
//! with a `VFIO_MIGRATION` event for every change the device reports.

use engine::driver::{DriverEvent, Side};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::vfio::{run_state_change, ModelDevice, StateMachine, Step};

/// One device: its configuration and where it stands on each side.
#[derive(Debug)]
pub(super) struct Dev {
    /// How it was configured.
    pub(super) cfg: ModelDevice,
    /// Its state on the source.
    pub(super) state: StateMachine,
    /// Its state on the destination.
    pub(super) dst_state: StateMachine,
    /// The source's live `migration-events` property (`qom-set` changes it where the
    /// device allows it); the destination keeps the configured value.
    pub(super) events: bool,
    /// Still plugged in (not unplugged during a migration).
    pub(super) present: bool,
    /// It reached pre-copy in this migration (what `switchover-ack` waits for).
    pub(super) precopy_reached: bool,
    /// Its fault's timer has gone off in this migration.
    pub(super) fault_done: bool,
}

impl Dev {
    /// A device as realized: `running` on both sides.
    pub(super) fn new(cfg: ModelDevice) -> Self {
        Dev {
            events: cfg.migration_events,
            cfg,
            state: StateMachine::new(),
            dst_state: StateMachine::new(),
            present: true,
            precopy_reached: false,
            fault_done: false,
        }
    }

    /// Takes `step` on `side`; a change emits `VFIO_MIGRATION` (when reported).
    pub(super) fn step(&mut self, side: Side, step: Step, at: Instant, out: &UnboundedSender<DriverEvent>) {
        let machine = match side {
            Side::Source => &mut self.state,
            Side::Destination => &mut self.dst_state,
        };
        let Some(new) = machine.apply(&self.cfg, step) else {
            return;
        };
        if side == Side::Source && machine.is_precopy() {
            self.precopy_reached = true;
        }
        let events = match side {
            Side::Source => self.events,
            Side::Destination => self.cfg.migration_events,
        };
        if self.cfg.reports(events) {
            let _ = out.send(DriverEvent::DeviceState {
                side,
                id: self.cfg.id.clone(),
                qom_path: self.cfg.qom_path(),
                state: new,
                at,
            });
        }
    }
}

/// The VM on `side` stops (the caller emits `STOP` after this) or starts (the caller
/// has emitted `RESUME`): QEMU's callbacks, each over every plugged device in turn.
pub(super) fn run_state_changed(
    devices: &mut [Dev],
    side: Side,
    running: bool,
    at: Instant,
    out: &UnboundedSender<DriverEvent>,
) {
    for step in run_state_change(running) {
        step_all(devices, side, step, at, out);
    }
}

/// `step` for every plugged device on `side`.
pub(super) fn step_all(
    devices: &mut [Dev],
    side: Side,
    step: Step,
    at: Instant,
    out: &UnboundedSender<DriverEvent>,
) {
    for d in devices.iter_mut().filter(|d| d.present) {
        d.step(side, step, at, out);
    }
}
