//! Readings taken while a migration runs: statistics and kernel dirty rates.

use serde::Serialize;
use tokio::time::Instant;

use super::MigrationStatus;

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
    /// What the stream's efficiency settings did.
    pub stream: StreamStats,
}

/// What multifd, compression, zero-page detection and XBZRLE did, from QEMU's
/// statistics, so that a report shows the settings at work (or not). Each is `None`
/// when QEMU did not report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Bytes sent over the multifd channels, after compression (`ram.multifd-bytes`).
    pub multifd_bytes: Option<u64>,
    /// Bytes of the pages sent whole, before any compression (`ram.normal-bytes`).
    pub normal_bytes: Option<u64>,
    /// Zero pages found and sent as a flag (`ram.duplicate`).
    pub zero_pages: Option<u64>,
    /// XBZRLE's statistics, while it is on (`xbzrle-cache`).
    pub xbzrle: Option<XbzrleStats>,
}

/// XBZRLE's statistics (`query-migrate`'s `xbzrle-cache`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct XbzrleStats {
    /// The cache's size.
    pub cache_size: u64,
    /// Bytes sent as deltas.
    pub bytes: u64,
    /// Pages sent as deltas.
    pub pages: u64,
    /// Pages not in the cache, sent whole.
    pub cache_miss: u64,
    /// Pages whose delta was larger than the page, sent whole.
    pub overflow: u64,
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
