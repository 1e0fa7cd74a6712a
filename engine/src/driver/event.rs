//! Things a side reports on its own, delivered on the driver's event channel.

use tokio::time::Instant;

use super::{DeviceState, MigrationStatus, Side};

/// Something a side reported on its own.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    /// The source's migration status changed.
    Migration {
        /// New status.
        status: MigrationStatus,
        /// When it arrived.
        at: Instant,
    },
    /// The destination's incoming migration status changed (when the backend has
    /// events on that side: it is how a run learns the destination has loaded).
    DestinationMigration {
        /// New status.
        status: MigrationStatus,
        /// When it arrived.
        at: Instant,
    },
    /// The source started a new pass.
    Pass {
        /// Pass number.
        pass: u64,
        /// When it arrived.
        at: Instant,
    },
    /// A side's vCPUs stopped.
    Stop {
        /// Which side.
        side: Side,
        /// When it arrived.
        at: Instant,
    },
    /// A side's vCPUs resumed.
    Resume {
        /// Which side.
        side: Side,
        /// When it arrived.
        at: Instant,
    },
    /// A VFIO device changed migration state (`VFIO_MIGRATION`).
    DeviceState {
        /// Which side.
        side: Side,
        /// The device id QEMU reported (may be empty).
        id: String,
        /// Its QOM path (always present).
        qom_path: String,
        /// The new state.
        state: DeviceState,
        /// When it arrived.
        at: Instant,
    },
    /// A device was unplugged (`DEVICE_DELETED`).
    DeviceDeleted {
        /// Which side.
        side: Side,
        /// The device id, when it had one.
        id: Option<String>,
        /// Its QOM path.
        qom_path: String,
        /// When it arrived.
        at: Instant,
    },
    /// A side's connection closed.
    Disconnected {
        /// Which side.
        side: Side,
        /// Why.
        reason: String,
    },
}
