//! The report a run ends with: what happened, where the VM runs, what it cost.
//!
//! Every key is always present (null when unknown), so scripts and Ansible can read it
//! without checking for keys first.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::driver::Side;
use crate::phase::PhaseTiming;
use crate::policy::{Action, PassRecord};

/// Serializes a duration as whole milliseconds.
pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The VM runs on the destination.
    Migrated,
    /// The policy (or the operator) cancelled it; the VM runs on the source.
    Aborted,
    /// The migration failed; see `error` and `running_on`.
    Failed,
}

/// Where the VM runs at the end, as confirmed by asking both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunningOn {
    /// The source runs it; the destination does not.
    Source,
    /// The destination runs it; the source does not.
    Destination,
    /// Could not be confirmed: a person must look.
    Unknown,
}

/// Documented exit codes; one place maps outcomes to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: migrated.
    Migrated = 0,
    /// 1: not migrated (aborted by policy or failed), VM running on the source.
    NotMigrated = 1,
    /// 2: invalid plan or usage.
    InvalidPlan = 2,
    /// 3: hosts not ready (preflight or check).
    NotReady = 3,
    /// 4: the VM needs attention (where it runs could not be confirmed).
    NeedsAttention = 4,
    /// 130: interrupted by the operator; migration cancelled, VM on the source.
    Interrupted = 130,
}

/// A policy action as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRecord {
    /// Pass (dirty-sync count) at which it was taken.
    pub pass: u64,
    /// Time since the migration started, ms.
    #[serde(serialize_with = "ms")]
    pub at: Duration,
    /// The escalation step's name.
    pub step: String,
    /// Why.
    pub reason: String,
    /// What was done.
    #[serde(flatten)]
    pub action: Action,
    /// Steps passed over to get here.
    pub skipped: Vec<String>,
}

/// The final report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The VM's name from the plan.
    pub vm: String,
    /// How it ended.
    pub result: Outcome,
    /// Where the VM runs now.
    pub running_on: RunningOn,
    /// True only if the VM moved.
    pub changed: bool,
    /// The exit code this report maps to.
    pub rc: i32,
    /// Phase in which the run ended.
    pub phase: String,
    /// QEMU's downtime figure, ms.
    pub downtime_ms: Option<u64>,
    /// Guest-visible pause measured by the tool: STOP on the source to RESUME on the
    /// destination (or back on the source), ms.
    pub paused_ms: Option<u64>,
    /// From `migrate` to the end, ms.
    pub total_ms: u64,
    /// QEMU's setup time, ms.
    pub setup_ms: Option<u64>,
    /// Bytes sent.
    pub transferred_bytes: u64,
    /// VFIO device state sent.
    pub vfio_transferred_bytes: Option<u64>,
    /// Dirty-sync passes.
    pub passes: u64,
    /// Highest dirty rate seen at a pass boundary, bytes/s.
    pub peak_dirty_rate: Option<u64>,
    /// Final downtime limit, ms.
    pub downtime_limit_ms: u64,
    /// From QEMU's `pre-switchover` event to `migrate-continue` sent, µs.
    pub switchover_latency_us: Option<u64>,
    /// Policy actions in order.
    pub actions: Vec<ActionRecord>,
    /// Each VFIO device's state timeline.
    pub devices: Vec<crate::gate::DeviceReport>,
    /// When every device was saving (the gate opened), ms since `migrate`.
    pub gate_opened_ms: Option<u64>,
    /// Measurements at each pass boundary.
    pub pass_history: Vec<PassRecord>,
    /// Time spent in each phase.
    pub phases: Vec<PhaseTiming>,
    /// What went wrong, when the VM did not move.
    pub error: Option<String>,
    /// Where the source was at the end (QEMU run state), when known.
    pub source_state: Option<String>,
    /// Where the destination was at the end, when known.
    pub destination_state: Option<String>,
}

impl Report {
    /// The exit status this report stands for.
    pub fn exit_status(&self) -> ExitStatus {
        match (self.result, self.running_on) {
            (Outcome::Migrated, RunningOn::Destination) => ExitStatus::Migrated,
            (_, RunningOn::Unknown) => ExitStatus::NeedsAttention,
            (Outcome::Migrated, RunningOn::Source) => ExitStatus::NeedsAttention,
            (_, RunningOn::Source) => ExitStatus::NotMigrated,
            (_, RunningOn::Destination) => ExitStatus::NeedsAttention,
        }
    }
}

impl Side {
    /// The report's name for a side.
    pub fn running_on(self) -> RunningOn {
        match self {
            Side::Source => RunningOn::Source,
            Side::Destination => RunningOn::Destination,
        }
    }
}
