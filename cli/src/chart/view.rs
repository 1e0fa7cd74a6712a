//! The report as the chart reads it: every key optional, so a saved report from an
//! aborted run, a run that ended at preflight, a run without devices, or an older
//! version of the tool (no `samples`, no `dirty_rate_source`) still draws.

use serde::Deserialize;
use serde_json::Value;

/// A run's report, leniently read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct View {
    /// The plan's VM name.
    #[serde(deserialize_with = "null_as_default")]
    pub vm: String,
    /// `migrated`, `aborted`, `failed` (or `invalid` for a plan that was refused).
    #[serde(deserialize_with = "null_as_default")]
    pub result: String,
    /// `source`, `destination`, `unknown`.
    pub running_on: Option<String>,
    /// The exit code.
    pub rc: Option<i64>,
    /// One line saying what happened.
    #[serde(deserialize_with = "null_as_default")]
    pub msg: String,
    /// Why the VM did not move, in words.
    pub error: Option<String>,
    /// The phase the run ended in.
    pub phase: Option<String>,
    /// QEMU's downtime figure, ms.
    pub downtime_ms: Option<u64>,
    /// The measured guest pause, ms.
    pub paused_ms: Option<u64>,
    /// When the pause began (the source's STOP), ms since `migrate`.
    pub paused_at_ms: Option<u64>,
    /// From `migrate` to the end, ms.
    #[serde(deserialize_with = "null_as_default")]
    pub total_ms: u64,
    /// Bytes sent.
    #[serde(deserialize_with = "null_as_default")]
    pub transferred_bytes: u64,
    /// Device state sent.
    pub vfio_transferred_bytes: Option<u64>,
    /// Dirty-sync passes.
    #[serde(deserialize_with = "null_as_default")]
    pub passes: u64,
    /// The downtime limit at the end, ms.
    pub downtime_limit_ms: Option<u64>,
    /// Policy actions in order.
    #[serde(deserialize_with = "null_as_default")]
    pub actions: Vec<ActionView>,
    /// Each VFIO device with its timeline.
    #[serde(deserialize_with = "null_as_default")]
    pub devices: Vec<DeviceView>,
    /// When every device was saving, ms since `migrate`.
    pub gate_opened_ms: Option<u64>,
    /// Measurements at each pass boundary.
    #[serde(deserialize_with = "null_as_default")]
    pub pass_history: Vec<PassView>,
    /// QEMU's statistics at each tick.
    #[serde(deserialize_with = "null_as_default")]
    pub samples: Vec<SampleView>,
    /// The plan's `limits`, `convergence` and `policy`, in the plan's words.
    pub plan: Option<Value>,
    /// QEMU run states at the end.
    pub source_state: Option<String>,
    /// QEMU run states at the end.
    pub destination_state: Option<String>,
}

/// One policy action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ActionView {
    /// The pass it was taken at.
    #[serde(deserialize_with = "null_as_default")]
    pub pass: u64,
    /// When, ms since `migrate`.
    #[serde(deserialize_with = "null_as_default")]
    pub at: u64,
    /// The escalation step.
    #[serde(deserialize_with = "null_as_default")]
    pub step: String,
    /// Why, in words.
    #[serde(deserialize_with = "null_as_default")]
    pub reason: String,
    /// `throttle`, `raise-downtime`, `stop-guest`, `abort`.
    #[serde(deserialize_with = "null_as_default")]
    pub action: String,
    /// The new downtime limit of a `raise-downtime`, ms.
    pub to_ms: Option<u64>,
    /// A throttle's settings, as the report writes them.
    pub throttle: Option<Value>,
    /// Steps passed over, in words.
    #[serde(deserialize_with = "null_as_default")]
    pub skipped: Vec<String>,
    /// Why carrying it out failed.
    pub failed: Option<String>,
}

/// One device.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeviceView {
    /// The plan's id.
    #[serde(deserialize_with = "null_as_default")]
    pub id: String,
    /// Declared pre-copy support.
    pub precopy: Option<bool>,
    /// Its last state.
    #[serde(deserialize_with = "null_as_default")]
    pub state: String,
    /// Every state change seen.
    #[serde(deserialize_with = "null_as_default")]
    pub timeline: Vec<StateView>,
}

/// One device state change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StateView {
    /// The state entered.
    #[serde(deserialize_with = "null_as_default")]
    pub state: String,
    /// When, ms since `migrate`.
    #[serde(deserialize_with = "null_as_default")]
    pub at_ms: u64,
    /// The migration's status then.
    pub migration_status: Option<String>,
}

/// One pass boundary.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PassView {
    /// The pass reached.
    #[serde(deserialize_with = "null_as_default")]
    pub pass: u64,
    /// When, ms since `migrate`.
    #[serde(deserialize_with = "null_as_default")]
    pub elapsed: u64,
    /// RAM still to send.
    #[serde(deserialize_with = "null_as_default")]
    pub remaining: u64,
    /// Dirty rate, bytes/s.
    #[serde(deserialize_with = "null_as_default")]
    pub dirty_rate: u64,
    /// Where the dirty rate came from (`kernel:...`, `stats`); absent in older reports.
    pub dirty_rate_source: Option<String>,
    /// Throughput, bytes/s.
    #[serde(deserialize_with = "null_as_default")]
    pub bandwidth: u64,
}

/// One tick's statistics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SampleView {
    /// When, ms since `migrate`.
    #[serde(deserialize_with = "null_as_default")]
    pub at_ms: u64,
    /// RAM still to send.
    #[serde(deserialize_with = "null_as_default")]
    pub remaining: u64,
    /// Throughput, bytes/s.
    #[serde(deserialize_with = "null_as_default")]
    pub bandwidth: u64,
    /// QEMU's dirty-rate statistic, bytes/s.
    #[serde(deserialize_with = "null_as_default")]
    pub stats_dirty_rate: u64,
}

/// Why a file could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but not a run's report.
    #[error("not a vfio-migrate run report: {0}")]
    NotAReport(String),
}

impl View {
    /// Reads a report as `--output json` writes it, or the last `report` line of
    /// `--output ndjson`.
    pub fn from_json(text: &str) -> Result<View, ViewError> {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(whole) => last_report_line(text).ok_or(ViewError::NotJson(whole))?,
        };
        View::from_value(value)
    }

    /// Reads a report from its JSON value.
    pub fn from_value(value: Value) -> Result<View, ViewError> {
        let Some(object) = value.as_object() else {
            return Err(ViewError::NotAReport("the top level is not an object".into()));
        };
        if !object.contains_key("result") {
            return Err(ViewError::NotAReport(
                "it has no `result` (write one with `--output json` on a run)".into(),
            ));
        }
        serde_json::from_value(value).map_err(|e| ViewError::NotAReport(e.to_string()))
    }

    /// The view of a report this process just made.
    pub fn of_report(report: &engine::Report) -> Result<View, ViewError> {
        let value = serde_json::to_value(report).map_err(|e| ViewError::NotAReport(e.to_string()))?;
        View::from_value(value)
    }

    /// The last moment anything in the report happened, ms since `migrate`: the chart's
    /// time axis ends there.
    pub fn end_ms(&self) -> u64 {
        let pause_end = self
            .paused_at_ms
            .zip(self.paused_ms)
            .map(|(at, ms)| at.saturating_add(ms));
        [
            Some(self.total_ms),
            self.samples.iter().map(|s| s.at_ms).max(),
            self.pass_history.iter().map(|p| p.elapsed).max(),
            self.actions.iter().map(|a| a.at).max(),
            self.devices
                .iter()
                .flat_map(|d| d.timeline.iter().map(|s| s.at_ms))
                .max(),
            self.gate_opened_ms,
            pause_end,
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }

    /// A plan setting as the plan wrote it (`"limits"`, `"downtime"` → `"500ms"`).
    pub fn plan_setting(&self, section: &str, key: &str) -> Option<&Value> {
        self.plan.as_ref()?.get(section)?.get(key)
    }
}

/// A `null` where a value was expected reads as the default (0, empty): a report edited
/// by hand, or from a version that wrote `null` there, still draws.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The last line of NDJSON that is the report (`{"event": "report", ...}`).
fn last_report_line(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v.get("event").and_then(Value::as_str) == Some("report"))
}
