//! What the engine needs from a hypervisor pair, and the facts a backend reports.
//!
//! A backend (QMP, libvirt, the simulator) implements [`Driver`] for one source and one
//! destination. Backends report facts and carry out requests; every decision is the
//! engine's. Nothing here names QMP or libvirt types.

use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

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

/// A failure reported by a backend, naming the side and the request that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DriverError {
    /// The side whose request failed.
    pub side: Side,
    /// The request (e.g. the QMP command).
    pub request: String,
    /// What went wrong, naming the side and request (backends write it complete).
    pub message: String,
    /// The connection to that side is gone (the process died or closed its monitor).
    pub disconnected: bool,
}

/// QEMU's migration status (`MigrationStatus`), with room for values newer QEMUs add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Maps QEMU's status string.
    pub fn parse(s: &str) -> Self {
        match s {
            "none" => Self::None,
            "setup" => Self::Setup,
            "active" => Self::Active,
            "pre-switchover" => Self::PreSwitchover,
            "device" => Self::Device,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            other => Self::Other(other.to_string()),
        }
    }

    /// Whether the migration has ended (one way or another).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Whether a side's vCPUs run (QEMU's `RunState`, simplified to what decisions need).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// The process is gone or its monitor unreachable.
    Gone,
}

impl RunState {
    /// QEMU's word for the state (`gone` when the process is unreachable).
    pub fn name(&self) -> String {
        match self {
            RunState::Running => "running".into(),
            RunState::InMigrate => "inmigrate".into(),
            RunState::PostMigrate => "postmigrate".into(),
            RunState::Paused { reason } => reason.clone(),
            RunState::Gone => "gone".into(),
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

/// Facts about one side, read without changing anything.
#[derive(Debug, Clone, Serialize)]
pub struct SideFacts {
    /// Hypervisor version, e.g. `10.0.2`.
    pub version: String,
    /// Run state.
    pub run_state: RunState,
    /// Migration status on this side.
    pub migration: MigrationStatus,
    /// QEMU's current migration blockers (`blocked-reasons`), verbatim.
    pub blocked_reasons: Vec<String>,
    /// Whether the guest runs under KVM with the dirty ring on (`Some`; the size when a
    /// backend can tell it, else 1).
    pub dirty_ring_size: Option<u64>,
    /// Whether the guest runs under KVM (else TCG).
    pub kvm: bool,
    /// Guest RAM in bytes, when known.
    pub ram_bytes: Option<u64>,
}

/// Facts about both sides.
#[derive(Debug, Clone, Serialize)]
pub struct PairFacts {
    /// The source.
    pub source: SideFacts,
    /// The destination.
    pub destination: SideFacts,
}

/// How vCPUs should be throttled, as the engine asks for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Throttle {
    /// Auto-converge with these percentages (armed at setup, raised now).
    AutoConverge {
        /// First throttle percentage.
        initial: u8,
        /// Added each pass.
        increment: u8,
        /// Most the guest is throttled.
        max: u8,
    },
    /// A per-vCPU dirty-page rate limit, in MiB/s.
    DirtyLimit {
        /// The limit in MiB/s.
        mib_per_sec: u64,
    },
}

/// What the engine sets up before `migrate`.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// Starting `downtime-limit`, in ms.
    pub downtime_limit_ms: u64,
    /// `max-bandwidth` in bytes/s, when the plan caps it.
    pub max_bandwidth: Option<u64>,
    /// Arm auto-converge (it cannot be switched on once a migration runs).
    pub arm_auto_converge: bool,
    /// Enable `switchover-ack` (and `return-path`) on both sides: the source then waits
    /// for the destination to acknowledge pre-copy devices' initial data.
    pub switchover_ack: bool,
}

/// Which kernel dirty log to measure with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyRateMode {
    /// KVM dirty ring.
    DirtyRing,
    /// KVM dirty bitmap.
    DirtyBitmap,
}

/// One reading of the source's migration statistics.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it was read (local monotonic clock).
    #[serde(skip)]
    pub at: Instant,
    /// Migration status.
    pub status: MigrationStatus,
    /// Guest RAM being migrated.
    pub total_bytes: u64,
    /// RAM still to send (QEMU's `ram.remaining`; excludes device state).
    pub remaining_bytes: u64,
    /// Bytes sent so far (RAM and device state).
    pub transferred_bytes: u64,
    /// Dirty pages per second QEMU measured over the last sync period.
    pub dirty_pages_rate: u64,
    /// Page size the rate counts in.
    pub page_size: u64,
    /// Dirty-bitmap syncs so far: the pass counter.
    pub dirty_sync_count: u64,
    /// Throughput in bytes/s.
    pub bandwidth: u64,
    /// QEMU's expected downtime, ms.
    pub expected_downtime_ms: Option<u64>,
    /// QEMU's downtime figure once completed, ms.
    pub downtime_ms: Option<u64>,
    /// Total time QEMU reports, ms.
    pub total_time_ms: Option<u64>,
    /// Setup time QEMU reports, ms.
    pub setup_time_ms: Option<u64>,
    /// VFIO device state sent so far.
    pub vfio_transferred_bytes: Option<u64>,
    /// Auto-converge's current throttle, percent.
    pub cpu_throttle_percentage: Option<u64>,
    /// QEMU's error text for a failed migration.
    pub error: Option<String>,
}

impl Sample {
    /// Dirty rate in bytes/s according to the migration statistics.
    pub fn stats_dirty_rate(&self) -> u64 {
        self.dirty_pages_rate.saturating_mul(self.page_size)
    }
}

/// A kernel dirty-rate measurement.
#[derive(Debug, Clone, Serialize)]
pub struct DirtyRate {
    /// Whole-guest rate in bytes/s.
    pub bytes_per_sec: u64,
    /// Per-vCPU rates in bytes/s (dirty ring only).
    pub per_vcpu: Vec<u64>,
    /// Which log it came from.
    pub mode: DirtyRateMode,
}

/// A VFIO device's migration state (QAPI `VfioMigrationState`), with room for values
/// newer QEMUs add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Maps QEMU's `device-state` string.
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" => Self::Stop,
            "running" => Self::Running,
            "stop-copy" => Self::StopCopy,
            "resuming" => Self::Resuming,
            "running-p2p" => Self::RunningP2p,
            "pre-copy" => Self::PreCopy,
            "pre-copy-p2p" => Self::PreCopyP2p,
            other => Self::Other(other.to_string()),
        }
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
}

/// A VFIO device as the source's QOM tree shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// The device's id (the last part of its QOM path under `/machine/peripheral`).
    pub id: String,
    /// Its QOM path.
    pub qom_path: String,
    /// Its QOM type, e.g. `vfio-pci`.
    pub type_name: String,
    /// Whether it emits `VFIO_MIGRATION` events (`migration-events`), when readable.
    pub migration_events: Option<bool>,
}

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

/// A hypervisor pair the engine can migrate between.
///
/// Every call has a bounded duration (backends apply their command timeouts).
#[allow(async_fn_in_trait)]
pub trait Driver {
    /// Connects to both sides.
    async fn connect(&mut self) -> Result<(), DriverError>;
    /// The events both sides report from now on; called once.
    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent>;
    /// Reads facts about both sides without changing anything.
    async fn inspect(&mut self) -> Result<PairFacts, DriverError>;
    /// Makes the destination listen for the stream (and survive a failed migration).
    async fn listen(&mut self, uri: &str) -> Result<(), DriverError>;
    /// Sets capabilities and parameters; remembers what it changed for [`Driver::restore`].
    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError>;
    /// Starts the migration.
    async fn start(&mut self, uri: &str) -> Result<(), DriverError>;
    /// Reads the source's migration statistics.
    async fn sample(&mut self) -> Result<Sample, DriverError>;
    /// Starts a kernel dirty-rate measurement on the source.
    async fn start_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Result<(), DriverError>;
    /// The last measurement, or `None` while one is still running.
    async fn dirty_rate(&mut self) -> Result<Option<DirtyRate>, DriverError>;
    /// Changes the downtime limit while migrating.
    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError>;
    /// Throttles the source's vCPUs.
    async fn throttle(&mut self, throttle: &Throttle) -> Result<(), DriverError>;
    /// Removes a throttle the engine set (after an abort the guest runs at full speed).
    async fn release_throttle(&mut self) -> Result<(), DriverError>;
    /// Stops the source's vCPUs (forcing by pausing).
    async fn stop_source(&mut self) -> Result<(), DriverError>;
    /// Lets a migration waiting in `pre-switchover` finish.
    async fn continue_switchover(&mut self) -> Result<(), DriverError>;
    /// Cancels the migration.
    async fn cancel(&mut self) -> Result<(), DriverError>;
    /// A side's run state.
    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError>;
    /// The destination's migration status.
    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError>;
    /// Starts a side's vCPUs.
    async fn resume(&mut self, side: Side) -> Result<(), DriverError>;
    /// Puts back the capabilities and parameters [`Driver::configure`] changed.
    async fn restore(&mut self) -> Result<(), DriverError>;
    /// The VFIO devices on the source.
    async fn vfio_devices(&mut self) -> Result<Vec<DeviceInfo>, DriverError>;
    /// Turns on `migration-events` for a device on the source (`qom-set`).
    async fn enable_migration_events(&mut self, qom_path: &str) -> Result<(), DriverError>;
}
