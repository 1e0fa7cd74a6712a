//! The chart's sentences, from the report's own words and numbers.

use plans::units::format_bytes;
use serde_json::Value;

use super::series::Series;
use super::view::{ActionView, View};
use crate::render::human::{ms_text, rate_text};

/// How it ended and where the VM runs, as the text report says it.
pub fn headline(view: &View) -> String {
    let vm = &view.vm;
    let rc = view.rc.map_or(String::new(), |rc| format!(" (exit {rc})"));
    let head = match (view.result.as_str(), view.running_on.as_deref()) {
        ("migrated", _) => format!("migrated: {vm} runs on the destination"),
        (result, Some("source")) => format!("not migrated ({result}): {vm} runs on the source"),
        (result, Some("destination")) => format!("{result}: {vm} runs on the destination"),
        (_, Some("unknown")) => format!("ATTENTION: where {vm} runs could not be confirmed"),
        (result, _) => format!("{result}: {vm}"),
    };
    format!("{head}{rc}")
}

/// Total, pause, passes, bytes on one line.
pub fn numbers(view: &View) -> String {
    let mut parts = vec![format!("total {}", ms_text(view.total_ms))];
    if let Some(p) = view.paused_ms {
        parts.push(format!("guest paused {} (measured)", ms_text(p)));
    }
    if let Some(d) = view.downtime_ms.filter(|_| view.result == "migrated") {
        parts.push(format!("downtime {} (QEMU)", ms_text(d)));
    }
    parts.push(format!("{} passes", view.passes));
    parts.push(format!("{} sent", format_bytes(view.transferred_bytes)));
    if let Some(v) = view.vfio_transferred_bytes.filter(|v| *v > 0) {
        parts.push(format!("{} of device state", format_bytes(v)));
    }
    parts.join(" · ")
}

/// The plan's limits and escalation on one line, when the report carries them.
pub fn limits(view: &View) -> Option<String> {
    let setting = |section: &str, key: &str| view.plan_setting(section, key).map(value_text);
    let mut parts = Vec::new();
    for (section, key, name) in [
        ("limits", "downtime", "downtime limit"),
        ("limits", "max_downtime", "ceiling"),
        ("limits", "max_bandwidth", "bandwidth"),
        ("limits", "deadline", "deadline"),
        ("policy", "escalation", "escalation"),
    ] {
        if let Some(v) = setting(section, key).filter(|v| v != "null") {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(last) = view.downtime_limit_ms {
        parts.push(format!("limit at the end {}", ms_text(last)));
    }
    (!parts.is_empty()).then(|| format!("plan: {}", parts.join(" · ")))
}

/// A plan value as the plan writes it: strings bare, lists joined with arrows.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(" → "),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// What was done, in a few words: the marker's label.
pub fn action_label(a: &ActionView) -> String {
    match (a.action.as_str(), a.to_ms) {
        ("raise-downtime", Some(to)) => format!("downtime limit → {}", ms_text(to)),
        ("throttle", _) => match &a.throttle {
            Some(t) => format!("throttle: {}", throttle_text(t)),
            None => "throttle".into(),
        },
        ("stop-guest", _) => "guest stopped".into(),
        ("abort", _) => "abort".into(),
        (other, _) => other.to_string(),
    }
}

/// A throttle's settings as the report writes them (`{"dirty_limit": ...}` or
/// auto-converge percentages), in words.
fn throttle_text(t: &Value) -> String {
    if let Some(mib) = t.get("mib_per_sec").and_then(Value::as_u64) {
        return format!("dirty limit {mib}MiB/s per vCPU");
    }
    if let Some(max) = t.get("max").and_then(Value::as_u64) {
        return format!("auto-converge up to {max}%");
    }
    value_text(t)
}

/// The whole story of action `i`: the tooltip and the table row.
pub fn action(i: usize, a: &ActionView) -> String {
    let mut text = format!(
        "{}. pass {} (+{}): {}: {} — {}",
        i + 1,
        a.pass,
        ms_text(a.at),
        a.step,
        action_label(a),
        a.reason
    );
    for s in &a.skipped {
        text.push_str(&format!(" [skipped {s}]"));
    }
    if let Some(f) = &a.failed {
        text.push_str(&format!(" [failed: {f}]"));
    }
    text
}

/// What the chart cannot show from this report, said plainly.
pub fn missing(view: &View, all: &[Series]) -> Vec<String> {
    let mut notes = Vec::new();
    let has = |id: &str| all.iter().any(|s| s.id == id);
    if view.samples.is_empty() && !view.pass_history.is_empty() {
        notes.push(
            "this report has no samples (an older version wrote it): remaining, bandwidth and dirty rate are drawn at pass boundaries only"
                .to_string(),
        );
    }
    if view.pass_history.is_empty() && !view.samples.is_empty() {
        notes
            .push("no pass boundary was reached: the lines are QEMU's statistics at each sample".to_string());
    }
    if !has("threshold") && !all.is_empty() {
        notes.push(
            "no threshold line: the report does not say the downtime limit before it was raised".to_string(),
        );
    }
    let threshold_start = all
        .iter()
        .find(|s| s.id == "threshold")
        .and_then(|s| s.points.first());
    let bandwidth_start = all
        .iter()
        .find(|s| s.id == "bandwidth")
        .and_then(|s| s.points.first());
    if threshold_start.map(|p| p.0) > bandwidth_start.map(|p| p.0) {
        notes.push(
            "the threshold line starts at the first raise: the report does not say the downtime limit before it"
                .to_string(),
        );
    }
    if !has("dirty-kernel") && !view.pass_history.is_empty() && has("dirty-stats") {
        notes.push("no kernel dirty-rate measurement was in by any pass boundary: the dirty rate is QEMU's statistic".to_string());
    }
    if let Some(peak) = view.pass_history.iter().map(|p| p.dirty_rate).max() {
        notes.push(format!("peak dirty rate at a boundary {}", rate_text(peak)));
    }
    notes
}
