//! The words hypervisors use for where things stand: sides, migration statuses, run
//! states and VFIO device states. Each is parsed from and printed as QEMU's spelling in
//! exactly one place (here), with room for values newer QEMUs add.

use serde::Serialize;

/// Which side of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Where the VM runs before the migration.
    Source,
    /// Where it runs after.
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// QEMU's migration status (`MigrationStatus`), with room for values newer QEMUs add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// No migration has run.
    None,
    /// Setting up (dirty tracking starts here; VFIO devices move to pre-copy).
    Setup,
    /// Copying RAM and device state while the guest runs.
    Active,
    /// The VM is stopped and QEMU waits for `migrate-continue`.
    PreSwitchover,
    /// Copying the final device state.
    Device,
    /// Done.
    Completed,
    /// Failed; the source should resume.
    Failed,
    /// Cancel requested.
    Cancelling,
    /// Cancelled; the source resumes.
    Cancelled,
    /// Any other status (post-copy states, wait-unplug, colo, newer values).
    Other(String),
}

impl MigrationStatus {
    /// The statuses this tool knows by name.
    const KNOWN: [MigrationStatus; 9] = [
        Self::None,
        Self::Setup,
        Self::Active,
        Self::PreSwitchover,
        Self::Device,
        Self::Completed,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Maps QEMU's status string; an unknown one is kept as [`MigrationStatus::Other`].
    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Other(s.to_string()))
    }

    /// QEMU's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::None => "none",
            Self::Setup => "setup",
            Self::Active => "active",
            Self::PreSwitchover => "pre-switchover",
            Self::Device => "device",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s,
        }
    }

    /// Whether the migration has ended (one way or another).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether a migration is under way (neither ended nor never started).
    pub fn in_progress(&self) -> bool {
        !self.is_final() && *self != Self::None
    }
}

/// Whether a side's vCPUs run (QEMU's `RunState`, simplified to what decisions need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The guest runs.
    Running,
    /// Waiting for an incoming migration.
    InMigrate,
    /// The migration completed and this side handed the VM over.
    PostMigrate,
    /// Stopped before it ever ran (`-S`) or stopped by a request; `reason` is QEMU's word.
    Paused {
        /// QEMU's run state name (prelaunch, paused, finish-migrate, ...).
        reason: String,
    },
    /// The connection to the side closed (or never opened): the process exited or
    /// closed its monitor. Only a closed connection is gone.
    Gone,
    /// The side is connected but did not answer within the timeout: the process may
    /// be stopped (SIGSTOP) or hung, and may answer later, still holding the guest.
    /// Never read as gone.
    NotAnswering {
        /// How long it was given, in ms.
        after_ms: u64,
    },
}

impl RunState {
    /// QEMU's word for the state (`gone` when the connection closed, `not answering
    /// within 10s` when it did not answer in time).
    pub fn name(&self) -> String {
        match self {
            RunState::Running => "running".into(),
            RunState::InMigrate => "inmigrate".into(),
            RunState::PostMigrate => "postmigrate".into(),
            RunState::Paused { reason } => reason.clone(),
            RunState::Gone => "gone".into(),
            RunState::NotAnswering { after_ms } => {
                format!(
                    "not answering within {:?}",
                    std::time::Duration::from_millis(*after_ms)
                )
            }
        }
    }

    /// Maps QEMU's `query-status` status string.
    pub fn parse(status: &str, running: bool) -> Self {
        match status {
            "running" => Self::Running,
            "inmigrate" => Self::InMigrate,
            "postmigrate" => Self::PostMigrate,
            _ if running => Self::Running,
            other => Self::Paused {
                reason: other.to_string(),
            },
        }
    }
}

/// A VFIO device's migration state (QAPI `VfioMigrationState`), with room for values
/// newer QEMUs add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// Stopped, not saving.
    Stop,
    /// Running, not saving (before migration, or back after a failure).
    Running,
    /// Saving its final state while the VM is stopped.
    StopCopy,
    /// Loading state on the destination.
    Resuming,
    /// Running, peer-to-peer DMA quiesced.
    RunningP2p,
    /// Saving while running (pre-copy).
    PreCopy,
    /// Pre-copy with peer-to-peer DMA quiesced.
    PreCopyP2p,
    /// A value this tool does not know.
    Other(String),
}

impl DeviceState {
    /// The states this tool knows by name.
    const KNOWN: [DeviceState; 7] = [
        Self::Stop,
        Self::Running,
        Self::StopCopy,
        Self::Resuming,
        Self::RunningP2p,
        Self::PreCopy,
        Self::PreCopyP2p,
    ];

    /// Maps QEMU's `device-state` string; an unknown one is kept as [`DeviceState::Other`].
    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|known| known.name() == s)
            .cloned()
            .unwrap_or_else(|| Self::Other(s.to_string()))
    }

    /// QEMU's name for the state.
    pub fn name(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Running => "running",
            Self::StopCopy => "stop-copy",
            Self::Resuming => "resuming",
            Self::RunningP2p => "running-p2p",
            Self::PreCopy => "pre-copy",
            Self::PreCopyP2p => "pre-copy-p2p",
            Self::Other(s) => s,
        }
    }

    /// Saving while the guest runs (QEMU's `vfio_device_state_is_precopy`).
    pub fn is_precopy(&self) -> bool {
        matches!(self, Self::PreCopy | Self::PreCopyP2p)
    }
}

/// Each status prints and serializes as QEMU spells it, so reports and operators read
/// QEMU's words, never Rust's.
macro_rules! qemu_words {
    ($($ty:ty => $name:ident),*) => {$(
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.$name())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
qemu_words!(MigrationStatus => as_str, RunState => name, DeviceState => name);
