//! The simulated VFIO devices' migration states, on both sides, moved the way QEMU 10's
//! `hw/vfio/migration.c` moves them, with a `VFIO_MIGRATION` event for every change when
//! the device has `migration-events=on` (a change to the state it is in emits nothing).

use engine::driver::{DeviceState, DriverEvent, Side};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::{SimDevice, SimFault};

/// One device: its configuration and where it stands on each side.
#[derive(Debug)]
pub(super) struct Dev {
    /// How it was configured.
    pub(super) cfg: SimDevice,
    /// Its state on the source.
    pub(super) state: DeviceState,
    /// Its state on the destination.
    pub(super) dst_state: DeviceState,
    /// Still plugged in (not unplugged during a migration).
    pub(super) present: bool,
    /// It reached pre-copy in this migration (what `switchover-ack` waits for).
    pub(super) precopy_reached: bool,
    /// Its fault's timer has gone off in this migration.
    pub(super) fault_done: bool,
}

impl Dev {
    /// A device as realized: `running` on both sides.
    pub(super) fn new(cfg: SimDevice) -> Self {
        Dev {
            cfg,
            state: DeviceState::Running,
            dst_state: DeviceState::Running,
            present: true,
            precopy_reached: false,
            fault_done: false,
        }
    }

    /// Its QOM path.
    pub(super) fn qom_path(&self) -> String {
        format!("/machine/peripheral/{}", self.cfg.id)
    }

    /// Whether its changes reach the monitor as `VFIO_MIGRATION` events.
    fn emits(&self) -> bool {
        self.cfg.migration_events && self.cfg.fault != SimFault::EventsMissing
    }

    /// Moves it to `new` on `side`; a change emits `VFIO_MIGRATION` (when enabled).
    pub(super) fn set(
        &mut self,
        side: Side,
        new: DeviceState,
        at: Instant,
        out: &UnboundedSender<DriverEvent>,
    ) {
        let current = match side {
            Side::Source => &mut self.state,
            Side::Destination => &mut self.dst_state,
        };
        if *current == new {
            return;
        }
        *current = new.clone();
        if new == DeviceState::PreCopy && side == Side::Source {
            self.precopy_reached = true;
        }
        if self.emits() {
            let _ = out.send(DriverEvent::DeviceState {
                side,
                id: self.cfg.id.clone(),
                qom_path: self.qom_path(),
                state: new,
                at,
            });
        }
    }

    /// Its state on `side`.
    fn on(&self, side: Side) -> &DeviceState {
        match side {
            Side::Source => &self.state,
            Side::Destination => &self.dst_state,
        }
    }
}

/// QEMU's `vfio_device_state_is_precopy`.
pub(super) fn is_precopy(state: &DeviceState) -> bool {
    matches!(state, DeviceState::PreCopy | DeviceState::PreCopyP2p)
}

/// The VM on `side` stops. QEMU runs every device's prepare callback
/// (`vfio_vmstate_change_prepare`: `pre-copy-p2p` from pre-copy, else `running-p2p`),
/// then every device's change callback (`vfio_vmstate_change`: a device in a pre-copy
/// state goes `stop-copy` when the VM stops for migration or is paused, any other goes
/// `stop`); the caller emits `STOP` after this.
pub(super) fn vm_stopped(devices: &mut [Dev], side: Side, at: Instant, out: &UnboundedSender<DriverEvent>) {
    for d in devices.iter_mut().filter(|d| d.present) {
        let p2p = if is_precopy(d.on(side)) {
            DeviceState::PreCopyP2p
        } else {
            DeviceState::RunningP2p
        };
        d.set(side, p2p, at, out);
    }
    for d in devices.iter_mut().filter(|d| d.present) {
        let next = if is_precopy(d.on(side)) {
            DeviceState::StopCopy
        } else {
            DeviceState::Stop
        };
        d.set(side, next, at, out);
    }
}

/// The VM on `side` starts; the caller has emitted `RESUME` (`vm_prepare_start` sends it
/// before the callbacks run): `running-p2p`, then `running`.
pub(super) fn vm_started(devices: &mut [Dev], side: Side, at: Instant, out: &UnboundedSender<DriverEvent>) {
    for d in devices.iter_mut().filter(|d| d.present) {
        d.set(side, DeviceState::RunningP2p, at, out);
    }
    for d in devices.iter_mut().filter(|d| d.present) {
        d.set(side, DeviceState::Running, at, out);
    }
}

/// After `failed` or `cancelled` (`MIG_EVENT_PRECOPY_FAILED`): every source device goes
/// back to `running`, whether or not the VM runs.
pub(super) fn migration_failed(devices: &mut [Dev], at: Instant, out: &UnboundedSender<DriverEvent>) {
    for d in devices.iter_mut().filter(|d| d.present) {
        d.set(Side::Source, DeviceState::Running, at, out);
    }
}
