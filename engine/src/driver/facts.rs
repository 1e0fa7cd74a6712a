//! What a backend reads about both sides before anything changes, and what the engine
//! asks it to set up.

use std::path::PathBuf;

use plans::{DeviceStateTransfer, MultifdCompression, ZeroPageDetection};
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
    /// Why this side cannot take part: QEMU's current migration blockers
    /// (`blocked-reasons`), verbatim, and what the backend found itself (through libvirt,
    /// a destination device the plan maps to that cannot be used).
    pub blocked_reasons: Vec<String>,
    /// Whether the guest runs under KVM with the dirty ring on (`Some`; the size when a
    /// backend can tell it, else 1).
    pub dirty_ring_size: Option<u64>,
    /// Whether the guest runs under KVM (else TCG).
    pub kvm: bool,
    /// Guest RAM in bytes, when known.
    pub ram_bytes: Option<u64>,
    /// The migration capabilities this side offers, by QEMU's names; `None` when the
    /// backend cannot tell (nothing is then judged from it).
    pub migration_capabilities: Option<Vec<String>>,
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
    /// How the stream uses the link: multifd, compression, XBZRLE, zero pages, the
    /// devices' channel.
    pub stream: StreamSetup,
}

/// The stream's efficiency settings. Multifd and XBZRLE are set to what is asked, on
/// or off, so that a setting some earlier user left does not shape this stream; what is
/// `None` is left as the backend has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamSetup {
    /// Parallel channels, on both sides (the destination before it listens); `None`:
    /// multifd off on both sides.
    pub multifd_channels: Option<u8>,
    /// How multifd channels compress, on both sides (with multifd only).
    pub multifd_compression: Option<MultifdCompression>,
    /// The compression's level, on the source.
    pub multifd_compression_level: Option<u8>,
    /// XBZRLE's cache on the source, in bytes; `None`: XBZRLE off.
    pub xbzrle_cache_bytes: Option<u64>,
    /// Where the source finds zero pages.
    pub zero_page_detection: Option<ZeroPageDetection>,
    /// The channel for the devices' state, set on each device (by QOM path, the same on
    /// both sides).
    pub device_state_transfer: Option<DeviceTransferSetup>,
}

/// Which channel the VFIO devices' state takes, for these devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceTransferSetup {
    /// The channel.
    pub transfer: DeviceStateTransfer,
    /// The devices' QOM paths.
    pub qom_paths: Vec<String>,
}

/// A QEMU `OnOffAuto` property's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOffAuto {
    /// On.
    On,
    /// Off.
    Off,
    /// QEMU decides.
    Auto,
}

impl OnOffAuto {
    /// Reads QEMU's word for it.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "on" => Some(OnOffAuto::On),
            "off" => Some(OnOffAuto::Off),
            "auto" => Some(OnOffAuto::Auto),
            _ => None,
        }
    }

    /// QEMU's word for it.
    pub fn word(self) -> &'static str {
        match self {
            OnOffAuto::On => "on",
            OnOffAuto::Off => "off",
            OnOffAuto::Auto => "auto",
        }
    }
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
    /// Whether its state goes over multifd channels (`x-migration-multifd-transfer`,
    /// QEMU 10.0); `None` when it has no such property.
    pub multifd_transfer: Option<OnOffAuto>,
}
