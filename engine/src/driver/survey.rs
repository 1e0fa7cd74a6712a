//! What `check` reads beyond [`super::SideFacts`]: the facts a dry run compares, read
//! without changing anything. A migration does not need them, so a backend that cannot
//! read them still migrates; `check` then says which rows it could not fill.

use serde::Serialize;

use super::OnOffAuto;

/// One side's facts for `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SideSurvey {
    /// Machine type, e.g. `pc-q35-10.0` (QEMU's `/machine` QOM type without
    /// `-machine`).
    pub machine: Option<String>,
    /// The migration capabilities this side supports, as QEMU names them.
    pub capabilities: Vec<String>,
    /// The current `max-bandwidth`, bytes per second.
    pub max_bandwidth: Option<u64>,
    /// The current `downtime-limit`, ms.
    pub downtime_limit_ms: Option<u64>,
    /// QOM types of guest-visible IOMMUs (`intel-iommu`, `virtio-iommu-pci`, ...).
    pub viommu: Vec<String>,
    /// QEMU's migration blockers on this side (`blocked-reasons`), verbatim.
    pub blocked_reasons: Vec<String>,
    /// The VFIO devices on this side.
    pub devices: Vec<DeviceSurvey>,
    /// Resident memory of the hypervisor process, when this host can read it (a local
    /// monitor whose peer is the hypervisor): untouched guest pages are not resident,
    /// and they cost almost nothing to migrate.
    pub resident_bytes: Option<u64>,
}

/// A VFIO device's migration-related properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceSurvey {
    /// The device's id.
    pub id: String,
    /// Its QOM type (`vfio-pci`, ...).
    pub type_name: String,
    /// Host PCI address (`host` property), when set.
    pub host: Option<String>,
    /// `enable-migration` (`on`, `off`, `auto`).
    pub enable_migration: Option<String>,
    /// `migration-events`.
    pub migration_events: Option<bool>,
    /// `x-migration-multifd-transfer` (QEMU 10.0).
    pub multifd_transfer: Option<OnOffAuto>,
}
