//! The ways a modelled device misbehaves, as real devices do.

use std::time::Duration;

/// A way a modelled device misbehaves during a migration. Both stand-ins inject the same
/// faults; each times them on its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behaves as a healthy device does.
    #[default]
    None,
    /// A pre-copy device that never leaves `running` after migration setup (no `pre-copy`).
    NeverSaving,
    /// A pre-copy device that reaches `pre-copy` only this long after setup.
    SlowToSaving(Duration),
    /// The device fails this long into pre-copy (from setup for a stop-copy-only device):
    /// the migration fails as QEMU reports a failed save (`failed`, with an `error-desc`).
    ErrorInPrecopy {
        /// Time from entering pre-copy to the failure.
        after: Duration,
    },
    /// Draining the device in stop-copy takes this much longer than its size implies,
    /// adding to the guest's pause.
    SlowStopCopy(Duration),
    /// The device disappears (`DEVICE_DELETED`) this long after migration setup.
    UnplugDuringMigration {
        /// Time from migration setup to the removal.
        after: Duration,
    },
    /// The device never emits `VFIO_MIGRATION`, even with `migration-events=on`.
    EventsMissing,
}

impl Fault {
    /// How long after migration setup a pre-copy device takes its setup step
    /// ([`super::Step::SaveSetup`]): at once when healthy, later when slow, never when it
    /// never saves.
    pub fn saving_delay(&self) -> Option<Duration> {
        match self {
            Fault::NeverSaving => None,
            Fault::SlowToSaving(delay) => Some(*delay),
            _ => Some(Duration::ZERO),
        }
    }

    /// What stop-copy takes beyond draining the state at the link's speed.
    pub fn extra_stop_copy(&self) -> Duration {
        match self {
            Fault::SlowStopCopy(extra) => *extra,
            _ => Duration::ZERO,
        }
    }
}
