//! A modelled VFIO device: its configuration, its faults, and the one migration state
//! machine both stand-ins drive ([`crate::sim`] in process, [`crate::devmodel`] over a
//! real QEMU).
//!
//! The state is the engine's own [`engine::driver::DeviceState`], so what a stand-in
//! reports is exactly what the engine parses from QEMU. Only [`StateMachine::apply`]
//! moves it, by the rules of QEMU 10's `hw/vfio/migration.c`, one [`Step`] per QEMU
//! callback:
//!
//! - `vfio_save_setup` ([`Step::SaveSetup`], migration status `setup`): a pre-copy device
//!   that is `running` moves to `pre-copy`; a stop-copy-only device, or one already
//!   stopped (the VM is paused), stays.
//! - VM stop: QEMU runs every device's `vfio_vmstate_change_prepare` ([`Step::Prepare`],
//!   registered only for P2P devices: `pre-copy-p2p` from pre-copy, else `running-p2p`),
//!   then every device's `vfio_vmstate_change` ([`Step::RunState`]: a device in a
//!   pre-copy state goes `stop-copy`, any other `stop`), all *before* it emits `STOP`.
//!   [`run_state_change`] gives the two steps in that order.
//! - `vfio_save_complete_precopy` ([`Step::SaveComplete`], status `device`): the device
//!   goes `stop-copy` (from `stop` when it had no pre-copy) and drains.
//! - `vfio_save_cleanup` ([`Step::SaveCleanup`], after `completed`): `stop-copy` → `stop`.
//! - `MIG_EVENT_PRECOPY_FAILED` ([`Step::PrecopyFailed`], after `failed`/`cancelled`): →
//!   `running`, whether or not the VM runs. QEMU restarts a VM the migration had stopped
//!   before this notifier runs, so for such a VM the VM start does it.
//! - VM start (`vm_prepare_start` emits `RESUME` first): P2P devices → `running-p2p`,
//!   then every device → `running`; the same two steps as a stop.
//! - Destination `vfio_load_setup` ([`Step::LoadSetup`], loading begins): → `resuming`.
//!
//! A transition to the state a device is already in emits nothing, as in QEMU (≥ 9.1).
//! When the state changes is each stand-in's business (its clock, the QEMU events it
//! follows); which state follows is decided here only.

mod device;
mod fault;
mod machine;

pub use device::ModelDevice;
pub use fault::Fault;
pub use machine::{run_state_change, StateMachine, Step};
