//! The VFIO device migration state machine: QEMU's transitions, held once.

use engine::driver::DeviceState;

use super::ModelDevice;

/// A QEMU callback that may move a device's migration state (see [`super`] for the
/// rules and where each one comes from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `vfio_save_setup`: the outgoing migration is set up.
    SaveSetup,
    /// `vfio_vmstate_change_prepare`: the VM is about to stop or start (P2P devices only).
    Prepare,
    /// `vfio_vmstate_change`: the VM has stopped or started.
    RunState {
        /// Whether the VM now runs.
        running: bool,
    },
    /// `vfio_save_complete_precopy`: the device's final state is saved.
    SaveComplete,
    /// `vfio_save_cleanup`: the outgoing migration completed.
    SaveCleanup,
    /// `MIG_EVENT_PRECOPY_FAILED`: the outgoing migration failed or was cancelled.
    PrecopyFailed,
    /// `vfio_load_setup`: the incoming migration begins loading.
    LoadSetup,
}

/// The steps of a VM stop (`running: false`) or start, in QEMU's order; each runs over
/// every device before the next (`vm_state_notify` runs all prepare callbacks first).
pub fn run_state_change(running: bool) -> [Step; 2] {
    [Step::Prepare, Step::RunState { running }]
}

/// One device's migration state on one side. Only [`StateMachine::apply`] moves it, so
/// no stand-in can put a device where QEMU would not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    state: DeviceState,
}

impl Default for StateMachine {
    /// `running`, as QEMU's `vfio_migration_init` leaves a realized device.
    fn default() -> Self {
        StateMachine {
            state: DeviceState::Running,
        }
    }
}

impl StateMachine {
    /// A realized device: `running`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the device stands.
    pub fn current(&self) -> &DeviceState {
        &self.state
    }

    /// QEMU's `vfio_device_state_is_precopy`.
    pub fn is_precopy(&self) -> bool {
        matches!(self.state, DeviceState::PreCopy | DeviceState::PreCopyP2p)
    }

    /// The state `step` would move `device` to, or `None` when it stays where it is.
    pub fn next(&self, device: &ModelDevice, step: Step) -> Option<DeviceState> {
        let next = match step {
            Step::SaveSetup if device.precopy && self.state == DeviceState::Running => DeviceState::PreCopy,
            Step::SaveSetup => return None,
            Step::Prepare if !device.p2p => return None,
            Step::Prepare if self.is_precopy() => DeviceState::PreCopyP2p,
            Step::Prepare => DeviceState::RunningP2p,
            Step::RunState { running: true } => DeviceState::Running,
            Step::RunState { running: false } if self.is_precopy() => DeviceState::StopCopy,
            Step::RunState { running: false } => DeviceState::Stop,
            Step::SaveComplete => DeviceState::StopCopy,
            Step::SaveCleanup if self.state == DeviceState::StopCopy => DeviceState::Stop,
            Step::SaveCleanup => return None,
            Step::PrecopyFailed => DeviceState::Running,
            Step::LoadSetup => DeviceState::Resuming,
        };
        (next != self.state).then_some(next)
    }

    /// Takes `step`; the new state when it changed (what QEMU reports as
    /// `VFIO_MIGRATION`), `None` when the device stayed.
    pub fn apply(&mut self, device: &ModelDevice, step: Step) -> Option<DeviceState> {
        let next = self.next(device, step)?;
        self.state = next.clone();
        Some(next)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
