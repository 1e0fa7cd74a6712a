//! The evacuation's report: every VM's own report, a summary, and at the top the keys
//! Ansible reads (`changed`, `failed`, `msg`, `rc`), as a single VM's report has them.
//!
//! The exit code is the worst of the VMs' (the largest: 4 over 3 over 1 over 0), or 130
//! when the operator interrupted the run.

use std::path::PathBuf;

use serde::Serialize;

use crate::exit::ExitStatus;
use crate::outcome::Outcome;
use crate::report::{Report, RunningOn};

/// One VM of the evacuation.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum VmEntry {
    /// Its migration ran (or got as far as preflight): its full report.
    Ran {
        /// The plan file (`plan_file`: the report's own `plan` is the plan's settings).
        #[serde(rename = "plan_file")]
        plan: PathBuf,
        /// When its run started, ms since the evacuation began.
        started_ms: u64,
        /// When its run ended (report made, journal closed), ms since the evacuation
        /// began.
        ended_ms: u64,
        /// The VM's report, as `vfio-migrate PLAN --output json` prints it.
        #[serde(flatten)]
        report: Box<Report>,
    },
    /// It has no report of its own: it was never started, or its run was lost.
    NoReport {
        /// The plan file.
        #[serde(rename = "plan_file")]
        plan: PathBuf,
        /// The plan's VM name.
        vm: String,
        /// `not_started` (nothing touched it) or `unknown` (its run ended without a
        /// report: a person must look).
        result: &'static str,
        /// `source` when not started, else `unknown`.
        running_on: RunningOn,
        /// Always `false`.
        changed: bool,
        /// What happened.
        msg: String,
        /// The exit code it stands for (4 when lost); `null` when not started.
        rc: Option<i32>,
    },
}

impl VmEntry {
    /// A VM the run did not start, because `why`.
    pub fn not_started(plan: PathBuf, vm: String, why: String) -> Self {
        VmEntry::NoReport {
            plan,
            vm,
            result: "not_started",
            running_on: RunningOn::Source,
            changed: false,
            msg: why,
            rc: None,
        }
    }

    /// A VM whose run ended without a report (`what` happened to it): where it runs is
    /// not known.
    pub fn lost(plan: PathBuf, vm: String, what: String) -> Self {
        VmEntry::NoReport {
            plan,
            vm,
            result: "unknown",
            running_on: RunningOn::Unknown,
            changed: false,
            msg: what,
            rc: Some(ExitStatus::NeedsAttention.code()),
        }
    }

    /// The VM's report, when it ran.
    pub fn report(&self) -> Option<&Report> {
        match self {
            VmEntry::Ran { report, .. } => Some(report),
            VmEntry::NoReport { .. } => None,
        }
    }

    /// The exit code it stands for; `None` when it was not started.
    pub fn rc(&self) -> Option<i32> {
        match self {
            VmEntry::Ran { report, .. } => Some(report.rc),
            VmEntry::NoReport { rc, .. } => *rc,
        }
    }
}

/// How the VMs ended, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// VMs that run on their destination now.
    pub migrated: usize,
    /// VMs whose migration the policy, a device or the operator stopped; they run on
    /// their source.
    pub aborted: usize,
    /// VMs whose migration failed or whose hosts were not ready (nothing was changed);
    /// they run on their source.
    pub failed: usize,
    /// VMs that need attention (exit 4): where they run could not be confirmed.
    pub unknown: usize,
    /// VMs never started (after `--fail-fast` or an interrupt).
    pub not_started: usize,
    /// From the first start to the last end, ms.
    pub wall_ms: u64,
    /// Bytes sent by all migrations.
    pub transferred_bytes: u64,
    /// The longest guest pause of any VM, ms.
    pub max_paused_ms: Option<u64>,
}

impl Summary {
    /// Counts `vms`, which took `wall_ms` in all.
    pub fn of(vms: &[VmEntry], wall_ms: u64) -> Self {
        let mut summary = Summary {
            wall_ms,
            ..Summary::default()
        };
        for vm in vms {
            let Some(report) = vm.report() else {
                match vm.rc() {
                    None => summary.not_started += 1,
                    Some(_) => summary.unknown += 1,
                }
                continue;
            };
            summary.transferred_bytes += report.transferred_bytes;
            summary.max_paused_ms = summary.max_paused_ms.max(report.paused_ms);
            let count = match (report.rc == ExitStatus::NeedsAttention.code(), report.result) {
                (true, _) => &mut summary.unknown,
                (_, Outcome::Migrated) => &mut summary.migrated,
                (_, Outcome::Aborted) => &mut summary.aborted,
                (_, Outcome::Failed) => &mut summary.failed,
            };
            *count += 1;
        }
        summary
    }
}

/// The report of a run over many plans.
#[derive(Debug, Clone, Serialize)]
pub struct EvacuationReport {
    /// True if any VM moved (Ansible's `changed`).
    pub changed: bool,
    /// True unless the exit code is 0 (Ansible's `failed`).
    pub failed: bool,
    /// One line saying what happened (Ansible's `msg`).
    pub msg: String,
    /// The exit code: the worst of the VMs', or 130 when interrupted.
    pub rc: i32,
    /// The counts.
    pub summary: Summary,
    /// Every VM, in the order of the plans given.
    pub vms: Vec<VmEntry>,
    /// What became of the webhooks' deliveries, all VMs together (each VM's own report
    /// has `notify: null` in an evacuation); `null` without webhooks.
    pub notify: Option<crate::report::NotifyCounts>,
}

impl EvacuationReport {
    /// The report of `vms` (in plan order) after `wall_ms`; `interrupted` when the
    /// operator stopped the run.
    pub fn new(vms: Vec<VmEntry>, wall_ms: u64, interrupted: bool) -> Self {
        let summary = Summary::of(&vms, wall_ms);
        let worst = vms
            .iter()
            .filter_map(VmEntry::rc)
            .filter(|rc| *rc != ExitStatus::Interrupted.code())
            .max()
            .unwrap_or(ExitStatus::Migrated.code());
        let rc = match interrupted {
            // A VM whose place is unknown still needs a person more than an interrupt
            // needs saying.
            true if worst == ExitStatus::NeedsAttention.code() => worst,
            true => ExitStatus::Interrupted.code(),
            false if summary.not_started > 0 && worst == 0 => ExitStatus::NotMigrated.code(),
            false => worst,
        };
        let msg = summary_words(&summary, vms.len(), interrupted);
        EvacuationReport {
            changed: summary.migrated > 0,
            failed: rc != 0,
            msg,
            rc,
            summary,
            vms,
            notify: None,
        }
    }
}

/// The summary in one line: "3 VMs: 2 migrated, 1 aborted".
fn summary_words(summary: &Summary, total: usize, interrupted: bool) -> String {
    let counts = [
        (summary.migrated, "migrated"),
        (summary.aborted, "aborted"),
        (summary.failed, "failed"),
        (summary.unknown, "need attention"),
        (summary.not_started, "not started"),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}"))
        .collect();
    let vms = match total {
        1 => "1 VM".to_string(),
        n => format!("{n} VMs"),
    };
    let lead = match interrupted {
        true => "interrupted; ",
        false => "",
    };
    format!("{lead}{vms}: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_count_only_what_happened() {
        let summary = Summary {
            migrated: 2,
            aborted: 1,
            ..Summary::default()
        };
        assert_eq!(summary_words(&summary, 3, false), "3 VMs: 2 migrated, 1 aborted");
        assert_eq!(
            summary_words(
                &Summary {
                    not_started: 1,
                    ..Summary::default()
                },
                1,
                true
            ),
            "interrupted; 1 VM: 1 not started"
        );
    }

    #[test]
    fn a_lost_run_needs_a_person_even_after_an_interrupt() {
        let vms = vec![
            VmEntry::lost("a.toml".into(), "a".into(), "its task panicked".into()),
            VmEntry::not_started("b.toml".into(), "b".into(), "interrupted".into()),
        ];
        let report = EvacuationReport::new(vms, 5, true);
        assert_eq!((report.summary.unknown, report.summary.not_started), (1, 1));
        assert_eq!(report.rc, 4);
    }

    #[test]
    fn vms_never_started_are_counted_and_keep_the_run_from_exiting_0() {
        let vms = vec![VmEntry::not_started(
            "a.toml".into(),
            "a".into(),
            "fail-fast".into(),
        )];
        let report = EvacuationReport::new(vms, 5, false);
        assert_eq!(report.summary.not_started, 1);
        assert_eq!(report.rc, 1);
        assert!(!report.changed);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["vms"][0]["result"], "not_started");
        assert_eq!(json["vms"][0]["running_on"], "source");
    }
}
