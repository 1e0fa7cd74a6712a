//! Reads libvirt's job statistics as the engine's [`Sample`].
//!
//! libvirt reports a migration's progress as typed parameters (`virDomainGetJobStats`):
//! the same numbers QEMU's `query-migrate` has, under libvirt's names. What is missing
//! stays `None` (or 0 where the engine needs a number), never guessed.

use std::collections::BTreeMap;

use engine::driver::{DirtyRate, DirtyRateMode, MigrationStatus, Sample, StreamStats, XbzrleStats};
use tokio::time::Instant;

use super::ffi::{JobStats, Typed};

/// libvirt's `virDomainJobType` values.
pub mod kind {
    /// No job.
    pub const NONE: i32 = 0;
    /// A job with a known end (unused for migrations).
    pub const BOUNDED: i32 = 1;
    /// A running migration.
    pub const UNBOUNDED: i32 = 2;
    /// Finished.
    pub const COMPLETED: i32 = 3;
    /// Failed.
    pub const FAILED: i32 = 4;
    /// Cancelled.
    pub const CANCELLED: i32 = 5;
}

/// The status a job's type says, for when no QEMU event said better.
pub fn status_of(job_kind: i32) -> MigrationStatus {
    match job_kind {
        kind::NONE => MigrationStatus::None,
        kind::BOUNDED | kind::UNBOUNDED => MigrationStatus::Active,
        kind::COMPLETED => MigrationStatus::Completed,
        kind::FAILED => MigrationStatus::Failed,
        kind::CANCELLED => MigrationStatus::Cancelled,
        other => MigrationStatus::Other(format!("libvirt job type {other}")),
    }
}

/// The engine's sample from libvirt's statistics; `status` is what the run knows best
/// (QEMU's last `MIGRATION` event while the job runs, else the job's type).
pub fn sample(stats: &JobStats, status: MigrationStatus, at: Instant) -> Sample {
    let num = |key: &str| stats.fields.get(key).and_then(Typed::as_u64);
    let finished = matches!(status, MigrationStatus::Completed);
    let downtime = num("downtime");
    let xbzrle = num("compression_cache").map(|cache_size| XbzrleStats {
        cache_size,
        bytes: num("compression_bytes").unwrap_or(0),
        pages: num("compression_pages").unwrap_or(0),
        cache_miss: num("compression_cache_misses").unwrap_or(0),
        overflow: num("compression_overflow").unwrap_or(0),
    });
    Sample {
        at,
        status,
        total_bytes: num("memory_total").unwrap_or(0),
        remaining_bytes: num("memory_remaining").unwrap_or(0),
        transferred_bytes: num("data_processed").unwrap_or(0),
        dirty_pages_rate: num("memory_dirty_rate").unwrap_or(0),
        page_size: num("memory_page_size").unwrap_or(4096),
        dirty_sync_count: num("memory_iteration").unwrap_or(0),
        bandwidth: num("memory_bps").unwrap_or(0),
        // libvirt's `downtime` is the expected downtime while the job runs and the
        // measured one once it completed.
        expected_downtime_ms: downtime.filter(|_| !finished),
        downtime_ms: downtime.filter(|_| finished),
        total_time_ms: num("time_elapsed"),
        setup_time_ms: num("setup_time"),
        vfio_transferred_bytes: num("vfio_data_transferred"),
        cpu_throttle_percentage: num("auto_converge_throttle"),
        error: match stats.fields.get("errmsg") {
            Some(Typed::Text(text)) => Some(text.clone()),
            _ => None,
        },
        stream: StreamStats {
            multifd_bytes: None,
            normal_bytes: num("memory_normal_bytes"),
            zero_pages: num("memory_constant"),
            xbzrle,
        },
    }
}

/// A finished kernel dirty-rate measurement from libvirt's `dirtyrate.*` domain
/// statistics (`calc_status` 2 is "measured"); `None` while one runs or when none ran.
pub fn dirty_rate(fields: &BTreeMap<String, Typed>, mode: DirtyRateMode) -> Option<DirtyRate> {
    const MIB: u64 = 1 << 20;
    let num = |key: &str| fields.get(key).and_then(Typed::as_u64);
    if num("dirtyrate.calc_status") != Some(2) {
        return None;
    }
    let rate = num("dirtyrate.megabytes_per_second")?;
    let per_vcpu = (0..)
        .map_while(|i| num(&format!("dirtyrate.vcpu.{i}.megabytes_per_second")))
        .map(|r| r * MIB)
        .collect();
    Some(DirtyRate {
        bytes_per_sec: rate * MIB,
        per_vcpu,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(kind: i32, fields: &[(&str, Typed)]) -> JobStats {
        JobStats {
            kind,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_running_job_reads_as_the_engine_s_sample() {
        let job = stats(
            kind::UNBOUNDED,
            &[
                ("memory_total", Typed::UInt(1 << 30)),
                ("memory_remaining", Typed::UInt(200 << 20)),
                ("data_processed", Typed::UInt(900 << 20)),
                ("memory_dirty_rate", Typed::UInt(25_600)),
                ("memory_page_size", Typed::UInt(4096)),
                ("memory_iteration", Typed::UInt(3)),
                ("memory_bps", Typed::UInt(128 << 20)),
                ("downtime", Typed::UInt(40)),
                ("time_elapsed", Typed::UInt(5_000)),
                ("vfio_data_transferred", Typed::UInt(64 << 20)),
                ("auto_converge_throttle", Typed::Int(20)),
            ],
        );
        let s = sample(&job, MigrationStatus::Active, Instant::now());
        assert_eq!(s.total_bytes, 1 << 30);
        assert_eq!(s.remaining_bytes, 200 << 20);
        assert_eq!(s.transferred_bytes, 900 << 20);
        assert_eq!(s.stats_dirty_rate(), 100 << 20);
        assert_eq!(s.dirty_sync_count, 3);
        assert_eq!(s.bandwidth, 128 << 20);
        assert_eq!(s.expected_downtime_ms, Some(40));
        assert_eq!(s.downtime_ms, None);
        assert_eq!(s.vfio_transferred_bytes, Some(64 << 20));
        assert_eq!(s.cpu_throttle_percentage, Some(20));
    }

    #[test]
    fn a_completed_job_s_downtime_is_the_measured_one() {
        let job = stats(kind::COMPLETED, &[("downtime", Typed::UInt(17))]);
        let s = sample(&job, status_of(job.kind), Instant::now());
        assert_eq!(s.status, MigrationStatus::Completed);
        assert_eq!(s.downtime_ms, Some(17));
        assert_eq!(s.expected_downtime_ms, None);
    }

    #[test]
    fn a_failed_job_carries_libvirt_s_error_text() {
        let job = stats(
            kind::FAILED,
            &[(
                "errmsg",
                Typed::Text("Unable to write to socket: Broken pipe".into()),
            )],
        );
        let s = sample(&job, status_of(job.kind), Instant::now());
        assert_eq!(s.status, MigrationStatus::Failed);
        assert_eq!(s.error.as_deref(), Some("Unable to write to socket: Broken pipe"));
    }

    #[test]
    fn missing_numbers_stay_unknown_and_a_page_is_4_kib_by_default() {
        let s = sample(&stats(kind::NONE, &[]), MigrationStatus::None, Instant::now());
        assert_eq!(s.page_size, 4096);
        assert_eq!(s.vfio_transferred_bytes, None);
        assert_eq!(s.stream.xbzrle, None);
        assert_eq!(status_of(kind::CANCELLED), MigrationStatus::Cancelled);
    }

    #[test]
    fn a_measured_dirty_rate_reads_in_bytes_with_each_vcpu() {
        let fields: BTreeMap<String, Typed> = [
            ("dirtyrate.calc_status", Typed::Int(2)),
            ("dirtyrate.megabytes_per_second", Typed::Int(203)),
            ("dirtyrate.vcpu.0.megabytes_per_second", Typed::UInt(150)),
            ("dirtyrate.vcpu.1.megabytes_per_second", Typed::UInt(53)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let rate = dirty_rate(&fields, DirtyRateMode::DirtyRing).expect("measured");
        assert_eq!(rate.bytes_per_sec, 203 << 20);
        assert_eq!(rate.per_vcpu, vec![150 << 20, 53 << 20]);
    }

    #[test]
    fn a_measurement_still_running_is_not_a_rate() {
        let fields: BTreeMap<String, Typed> = [
            ("dirtyrate.calc_status".to_string(), Typed::Int(1)),
            ("dirtyrate.megabytes_per_second".to_string(), Typed::Int(0)),
        ]
        .into_iter()
        .collect();
        assert!(dirty_rate(&fields, DirtyRateMode::DirtyBitmap).is_none());
    }
}
