//! Reading QEMU's replies as JSON, tolerant of what newer QEMUs add, strict about
//! what decisions rest on.
//!
//! `query-migrate` and `query-status` are read from plain JSON rather than the typed
//! structs: one unknown status value would make the typed reply fail to decode, and a
//! migration tool must keep reading statistics from a QEMU newer than its schema. But a
//! fact the engine decides on is validated, never guessed: a `query-status` reply
//! without its `status` and `running`, or a `query-migrate` reply that is not an object,
//! is an [`UnexpectedReply`], not "paused (unknown)" or "no migration".

use tokio::time::Instant;

use engine::driver::{DirtyRate, DirtyRateMode, MigrationStatus, RunState, Sample, StreamStats, XbzrleStats};
use serde_json::Value;

/// A reply that does not carry what the command promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply to {command}: {reply}")]
pub struct UnexpectedReply {
    /// The command.
    pub command: &'static str,
    /// The reply as JSON, truncated.
    pub reply: String,
}

impl UnexpectedReply {
    fn to(command: &'static str, reply: &Value) -> Self {
        UnexpectedReply {
            command,
            reply: truncated(reply),
        }
    }
}

/// A reply as JSON, cut to a length that fits in an error message.
fn truncated(reply: &Value) -> String {
    const MAX: usize = 200;
    let text = reply.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}... ({} bytes)", text.len())
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_u64()
        .or_else(|| cur.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// The migration status in a `query-migrate` reply (`none` when absent, as QEMU omits it
/// before any migration). A reply that is not an object, or a status that is not a
/// string, is unexpected.
pub fn migration_status(reply: &Value) -> Result<MigrationStatus, UnexpectedReply> {
    let unexpected = || UnexpectedReply::to("query-migrate", reply);
    let object = reply.as_object().ok_or_else(unexpected)?;
    match object.get("status") {
        None => Ok(MigrationStatus::None),
        Some(Value::String(status)) if !status.is_empty() => Ok(MigrationStatus::parse(status)),
        Some(_) => Err(unexpected()),
    }
}

/// QEMU's current migration blockers from a `query-migrate` reply (none when absent, as
/// QEMU omits them when nothing blocks). A list that is not of strings is unexpected:
/// a blocker must not be missed because it was spelled oddly.
pub fn blocked_reasons(reply: &Value) -> Result<Vec<String>, UnexpectedReply> {
    let unexpected = || UnexpectedReply::to("query-migrate", reply);
    match reply.get("blocked-reasons") {
        None => Ok(Vec::new()),
        Some(Value::Array(reasons)) => reasons
            .iter()
            .map(|r| r.as_str().map(str::to_string).ok_or_else(unexpected))
            .collect(),
        Some(_) => Err(unexpected()),
    }
}

/// The names of the migration capabilities a QEMU offers, from a
/// `query-migrate-capabilities` reply (every one it lists, on or off).
pub fn capability_names(reply: &Value) -> Result<Vec<String>, UnexpectedReply> {
    let unexpected = || UnexpectedReply::to("query-migrate-capabilities", reply);
    reply
        .as_array()
        .ok_or_else(unexpected)?
        .iter()
        .map(|c| {
            c.get("capability")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(unexpected)
        })
        .collect()
}

/// Whether KVM runs the guest, from a `query-kvm` reply.
pub fn kvm_enabled(reply: &Value) -> Result<bool, UnexpectedReply> {
    reply
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| UnexpectedReply::to("query-kvm", reply))
}

/// A [`Sample`] from a `query-migrate` reply; only its status is required (statistics
/// QEMU leaves out read as zero, as QEMU leaves them out before and after a migration).
pub fn sample(reply: &Value, at: Instant) -> Result<Sample, UnexpectedReply> {
    let status = migration_status(reply)?;
    let ram = |key: &str| u64_at(reply, &["ram", key]);
    let mbps = reply
        .get("ram")
        .and_then(|r| r.get("mbps"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let vfio = u64_at(reply, &["vfio", "transferred"]);
    Ok(Sample {
        at,
        status,
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
        stream: stream_stats(reply),
    })
}

/// What the stream's settings did, from a `query-migrate` reply.
fn stream_stats(reply: &Value) -> StreamStats {
    let ram = |key: &str| u64_at(reply, &["ram", key]);
    let xbzrle = |key: &str| u64_at(reply, &["xbzrle-cache", key]).unwrap_or(0);
    StreamStats {
        multifd_bytes: ram("multifd-bytes"),
        normal_bytes: ram("normal-bytes"),
        zero_pages: ram("duplicate"),
        xbzrle: reply.get("xbzrle-cache").map(|_| XbzrleStats {
            cache_size: xbzrle("cache-size"),
            bytes: xbzrle("bytes"),
            pages: xbzrle("pages"),
            cache_miss: xbzrle("cache-miss"),
            overflow: xbzrle("overflow"),
        }),
    }
}

/// The run state in a `query-status` reply, which must carry a non-empty `status`
/// string and a `running` boolean: whether the source is resumed depends on it.
pub fn run_state(reply: &Value) -> Result<RunState, UnexpectedReply> {
    let status = reply
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let running = reply.get("running").and_then(Value::as_bool);
    match (status, running) {
        (Some(status), Some(running)) => Ok(RunState::parse(status, running)),
        _ => Err(UnexpectedReply::to("query-status", reply)),
    }
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
        let s = sample(&reply, Instant::now()).expect("a sample");
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
        let s = sample(&json!({"status": "colo-future"}), Instant::now()).expect("a sample");
        assert_eq!(s.status, MigrationStatus::Other("colo-future".into()));
        assert_eq!(migration_status(&json!({})), Ok(MigrationStatus::None));
    }

    #[test]
    fn a_query_migrate_reply_of_the_wrong_shape_is_unexpected() {
        for reply in [
            json!([]),
            json!("active"),
            json!({"status": 3}),
            json!({"status": ""}),
        ] {
            let error = migration_status(&reply).expect_err("not a status");
            assert_eq!(
                error.to_string(),
                format!("unexpected reply to query-migrate: {reply}")
            );
        }
        assert!(blocked_reasons(&json!({"blocked-reasons": "vfio"})).is_err());
        assert!(blocked_reasons(&json!({"blocked-reasons": [1]})).is_err());
        assert_eq!(blocked_reasons(&json!({})), Ok(vec![]));
    }

    #[test]
    fn a_query_status_reply_without_status_and_running_is_unexpected_not_paused() {
        for reply in [
            json!({}),
            json!({"status": "running"}),
            json!({"running": true}),
            json!({"status": 5, "running": "yes"}),
            json!({"status": "", "running": false}),
            json!(null),
        ] {
            let error = run_state(&reply).expect_err("no run state");
            assert_eq!(
                error.to_string(),
                format!("unexpected reply to query-status: {reply}")
            );
        }
    }

    #[test]
    fn a_long_unexpected_reply_is_truncated() {
        let reply = json!({"junk": "x".repeat(10_000)});
        let words = run_state(&reply).expect_err("no run state").to_string();
        assert!(words.len() < 300, "{words}");
        assert!(words.ends_with("(10011 bytes)"), "{words}");
    }

    #[test]
    fn query_kvm_without_enabled_is_unexpected_not_tcg() {
        assert_eq!(kvm_enabled(&json!({"enabled": true, "present": true})), Ok(true));
        assert!(kvm_enabled(&json!({})).is_err());
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
            Ok(RunState::Running)
        );
        assert_eq!(
            run_state(&json!({"status": "inmigrate", "running": false})),
            Ok(RunState::InMigrate)
        );
        assert_eq!(
            run_state(&json!({"status": "prelaunch", "running": false})),
            Ok(RunState::Paused {
                reason: "prelaunch".into()
            })
        );
    }
}
