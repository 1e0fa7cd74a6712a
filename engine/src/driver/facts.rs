//! What a backend reads about both sides before anything changes, and what the engine
//! asks it to set up.

use std::path::PathBuf;

use serde::Serialize;

use super::{MigrationStatus, RunState};

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
    /// Encrypt the migration stream; `None` leaves the backend's TLS settings as they
    /// are.
    pub tls: Option<TlsSetup>,
}

/// TLS for the migration stream: x509 credentials on both sides, each verifying the
/// other's certificate. The destination holds its credentials before it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSetup {
    /// The directory on the source's host with `ca-cert.pem`, `client-cert.pem` and
    /// `client-key.pem`.
    pub source_dir: PathBuf,
    /// The directory on the destination's host with `ca-cert.pem`, `server-cert.pem`
    /// and `server-key.pem`.
    pub destination_dir: PathBuf,
    /// The name the destination's certificate must carry; `None`: the host the URI
    /// names.
    pub hostname: Option<String>,
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
