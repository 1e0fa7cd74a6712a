//! What `check` answers: the rows, the verdict, the prediction, and the keys Ansible
//! reads (`changed`, `failed`, `msg`, `rc`), with the same meaning as a run's.

use serde::Serialize;

use crate::driver::{DirtyRate, SideSurvey};
use crate::exit::ExitStatus;

use super::{Prediction, Row, Status, Verdict};

/// The result of `vfio-migrate check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Always `false`: a check changes nothing.
    pub changed: bool,
    /// Whether the hosts are not ready.
    pub failed: bool,
    /// The exit code: 0 ready (warnings allowed), 3 not ready.
    pub rc: i32,
    /// The verdict in one line.
    pub msg: String,
    /// What the rows add up to.
    pub verdict: Verdict,
    /// The plan's VM, when a plan was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Whether running the plan now would change anything (`false` when the VM
    /// already runs on the destination); `None` when that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_change: Option<bool>,
    /// The dirty-rate measurement taken (the one thing a check starts on a side; it
    /// changes no setting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<DirtyRate>,
    /// How the migration is expected to go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// Every check, in order.
    pub rows: Vec<Row>,
    /// What the hosts' kernels showed about the plan's devices, for a play that runs
    /// `check --side` on each host and compares them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_devices: Vec<serde_json::Value>,
    /// What the monitors showed (source, destination), for the host checks that follow.
    #[serde(skip)]
    pub surveys: [Option<SideSurvey>; 2],
}

impl CheckReport {
    /// Adds up `rows`.
    pub fn new(vm: Option<String>, rows: Vec<Row>) -> CheckReport {
        let verdict = Verdict::of(&rows);
        let status = match verdict.is_ready() {
            true => ExitStatus::Migrated,
            false => ExitStatus::NotReady,
        };
        CheckReport {
            changed: false,
            failed: !verdict.is_ready(),
            rc: status.code(),
            msg: summary(verdict, &rows),
            verdict,
            vm,
            would_change: None,
            measured: None,
            prediction: None,
            rows,
            host_devices: Vec::new(),
            surveys: [None, None],
        }
    }

    /// Adds rows (the hosts' own checks) and adds the verdict up again.
    pub fn add_rows(&mut self, rows: Vec<Row>) {
        self.rows.extend(rows);
        let again = CheckReport::new(self.vm.take(), std::mem::take(&mut self.rows));
        self.vm = again.vm;
        self.rows = again.rows;
        self.verdict = again.verdict;
        self.failed = again.failed;
        self.rc = again.rc;
        self.msg = again.msg;
    }
}

fn summary(verdict: Verdict, rows: &[Row]) -> String {
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let (fails, warns) = (count(Status::Fail), count(Status::Warn));
    match verdict {
        Verdict::Ready => format!("ready: all {} checks passed", rows.len()),
        Verdict::ReadyWithWarnings => format!("ready, with {warns} warning(s) in {} checks", rows.len()),
        Verdict::NotReady => {
            let first = rows
                .iter()
                .find(|r| r.status == Status::Fail)
                .map(|r| r.finding.as_str())
                .unwrap_or("");
            format!(
                "not ready: {fails} of {} checks failed; first: {first}",
                rows.len()
            )
        }
    }
}
