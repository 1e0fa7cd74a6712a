//! Reading QEMU's replies as JSON, tolerant of what newer QEMUs add.
//!
//! `query-migrate` and `query-status` are read from plain JSON rather than the typed
//! structs: one unknown status value would make the typed reply fail to decode, and a
//! migration tool must keep reading statistics from a QEMU newer than its schema.

use tokio::time::Instant;

use engine::driver::{DirtyRate, DirtyRateMode, MigrationStatus, RunState, Sample};
use serde_json::Value;

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_u64()
        .or_else(|| cur.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// The migration status in a `query-migrate` reply (`none` when absent, as QEMU omits it
/// before any migration).
pub fn migration_status(reply: &Value) -> MigrationStatus {
    reply
        .get("status")
        .and_then(Value::as_str)
        .map_or(MigrationStatus::None, MigrationStatus::parse)
}

/// QEMU's current migration blockers from a `query-migrate` reply.
pub fn blocked_reasons(reply: &Value) -> Vec<String> {
    reply
        .get("blocked-reasons")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A [`Sample`] from a `query-migrate` reply.
pub fn sample(reply: &Value, at: Instant) -> Sample {
    let ram = |key: &str| u64_at(reply, &["ram", key]);
    let mbps = reply
        .get("ram")
        .and_then(|r| r.get("mbps"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let vfio = u64_at(reply, &["vfio", "transferred"]);
    Sample {
        at,
        status: migration_status(reply),
        total_bytes: ram("total").unwrap_or(0),
        remaining_bytes: ram("remaining").unwrap_or(0),
        transferred_bytes: ram("transferred").unwrap_or(0) + vfio.unwrap_or(0),
        dirty_pages_rate: ram("dirty-pages-rate").unwrap_or(0),
        page_size: ram("page-size").unwrap_or(4096),
        dirty_sync_count: ram("dirty-sync-count").unwrap_or(0),
        // QEMU reports megabits per second.
        bandwidth: (mbps.max(0.0) * 1e6 / 8.0) as u64,
        expected_downtime_ms: u64_at(reply, &["expected-downtime"]),
        downtime_ms: u64_at(reply, &["downtime"]),
        total_time_ms: u64_at(reply, &["total-time"]),
        setup_time_ms: u64_at(reply, &["setup-time"]),
        vfio_transferred_bytes: vfio,
        cpu_throttle_percentage: u64_at(reply, &["cpu-throttle-percentage"]),
        error: reply
            .get("error-desc")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// The run state in a `query-status` reply.
pub fn run_state(reply: &Value) -> RunState {
    let status = reply.get("status").and_then(Value::as_str).unwrap_or("unknown");
    let running = reply.get("running").and_then(Value::as_bool).unwrap_or(false);
    RunState::parse(status, running)
}

/// A finished measurement from a `query-dirty-rate` reply, or `None` while measuring.
/// QEMU reports MiB/s.
pub fn dirty_rate(reply: &Value, mode: DirtyRateMode) -> Option<DirtyRate> {
    if reply.get("status").and_then(Value::as_str) != Some("measured") {
        return None;
    }
    const MIB: u64 = 1024 * 1024;
    let rate = u64_at(reply, &["dirty-rate"])?;
    let per_vcpu = reply
        .get("vcpu-dirty-rate")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| u64_at(v, &["dirty-rate"]))
                .map(|r| r * MIB)
                .collect()
        })
        .unwrap_or_default();
    Some(DirtyRate {
        bytes_per_sec: rate * MIB,
        per_vcpu,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn active_migration_reply_becomes_a_sample() {
        let reply = json!({
            "status": "active", "expected-downtime": 300, "total-time": 1200, "setup-time": 3,
            "ram": {"total": 1073741824u64, "remaining": 268435456u64, "transferred": 500000000u64,
                    "dirty-pages-rate": 51200, "page-size": 4096, "dirty-sync-count": 3, "mbps": 1073.7},
            "vfio": {"transferred": 1000}
        });
        let s = sample(&reply, Instant::now());
        assert_eq!(s.status, MigrationStatus::Active);
        assert_eq!(s.remaining_bytes, 268435456);
        assert_eq!(s.transferred_bytes, 500001000);
        assert_eq!(s.stats_dirty_rate(), 51200 * 4096);
        assert_eq!(s.dirty_sync_count, 3);
        assert_eq!(s.bandwidth, 134_212_500);
        assert_eq!(s.vfio_transferred_bytes, Some(1000));
    }

    #[test]
    fn unknown_status_is_kept_not_rejected() {
        let s = sample(&json!({"status": "colo-future"}), Instant::now());
        assert_eq!(s.status, MigrationStatus::Other("colo-future".into()));
        assert_eq!(migration_status(&json!({})), MigrationStatus::None);
    }

    #[test]
    fn dirty_rate_is_none_until_measured() {
        assert!(dirty_rate(&json!({"status": "measuring"}), DirtyRateMode::DirtyRing).is_none());
        let r = dirty_rate(
            &json!({"status": "measured", "dirty-rate": 100, "vcpu-dirty-rate": [{"id": 0, "dirty-rate": 100}]}),
            DirtyRateMode::DirtyRing,
        )
        .expect("measured");
        assert_eq!(r.bytes_per_sec, 100 << 20);
        assert_eq!(r.per_vcpu, vec![100 << 20]);
    }

    #[test]
    fn run_states_map_from_query_status() {
        assert_eq!(
            run_state(&json!({"status": "running", "running": true})),
            RunState::Running
        );
        assert_eq!(
            run_state(&json!({"status": "inmigrate", "running": false})),
            RunState::InMigrate
        );
        assert_eq!(
            run_state(&json!({"status": "prelaunch", "running": false})),
            RunState::Paused {
                reason: "prelaunch".into()
            }
        );
    }
}
