//! The report a run ends with: what happened, where the VM runs, what it cost.
//!
//! Every key is always present (null when unknown), so scripts and Ansible can read it
//! without checking for keys first.

use std::time::Duration;

use serde::{Serialize, Serializer};

use plans::Plan;

use crate::driver::RunState;
use crate::driver::{Capabilities, StreamStats};
use crate::events::{EngineEvent, EventSink};
use crate::phase::Phase;
use crate::phase::PhaseClock;
use crate::phase::PhaseTiming;
use crate::placement::Sides;
use crate::policy::{Action, Because, PassRecord, Skipped};
use crate::preflight::Problem;
use crate::samples::SamplePoint;
use crate::state::{Observed, Run};
use crate::verify::Where;

/// Serializes a value as its words.
fn words<T: std::fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Serializes each value as its words.
fn words_each<T: std::fmt::Display, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(ToString::to_string))
}

/// Serializes a duration as whole milliseconds.
pub fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

pub use crate::exit::ExitStatus;
pub use crate::outcome::{Outcome, Reason};

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

/// A policy action as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRecord {
    /// Pass (dirty-sync count) at which it was taken.
    pub pass: u64,
    /// Time since the migration started, ms.
    #[serde(serialize_with = "ms")]
    pub at: Duration,
    /// The escalation step's name (`on-deadline` for the deadline's forcing).
    pub step: &'static str,
    /// Why, in words: what set the policy off and, for a throttle, what it was computed
    /// from.
    #[serde(serialize_with = "words")]
    pub reason: Because,
    /// What was done.
    #[serde(flatten)]
    pub action: Action,
    /// Steps passed over to get here, in words.
    #[serde(serialize_with = "words_each")]
    pub skipped: Vec<Skipped>,
    /// Why carrying it out failed, when it did.
    pub failed: Option<String>,
}

/// The parts of the plan that judged the run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSettings {
    /// `[limits]`: downtime, its ceiling, bandwidth, deadline, saving timeout.
    pub limits: plans::Limits,
    /// `[convergence]`: where dirty rates come from, the sample interval, stall passes.
    pub convergence: plans::Convergence,
    /// `[policy]`: the escalation and its settings.
    pub policy: plans::Policy,
}

impl PlanSettings {
    /// The settings of `plan`.
    pub fn of(plan: &Plan) -> Self {
        PlanSettings {
            limits: plan.limits.clone(),
            convergence: plan.convergence.clone(),
            policy: plan.policy.clone(),
        }
    }
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
    /// True unless the exit code is 0 (Ansible's `failed`).
    pub failed: bool,
    /// One line saying what happened (Ansible's `msg`).
    pub msg: String,
    /// The exit code this report maps to.
    pub rc: i32,
    /// Phase in which the run ended.
    pub phase: Phase,
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
    /// What the stream's settings did (multifd bytes, zero pages, XBZRLE), from QEMU's
    /// last statistics; `null` when none were read.
    pub stream: Option<StreamStats>,
    /// Dirty-sync passes.
    pub passes: u64,
    /// Highest dirty rate seen at a pass boundary, bytes/s.
    pub peak_dirty_rate: Option<u64>,
    /// Final downtime limit, ms.
    pub downtime_limit_ms: u64,
    /// From QEMU's `pre-switchover` event to `migrate-continue` issued, µs: what the
    /// hold adds to the guest's pause.
    pub switchover_latency_us: Option<u64>,
    /// From the same event to QEMU's reply to `migrate-continue`, µs. Longer: QEMU
    /// answers from its main loop, which may be busy with the device stage meanwhile.
    pub switchover_reply_us: Option<u64>,
    /// Policy actions in order.
    pub actions: Vec<ActionRecord>,
    /// Each VFIO device's state timeline.
    pub devices: Vec<crate::gate::DeviceReport>,
    /// When every device was saving (the gate opened), ms since `migrate`.
    pub gate_opened_ms: Option<u64>,
    /// Measurements at each pass boundary.
    pub pass_history: Vec<PassRecord>,
    /// QEMU's statistics at each tick of the convergence loop, at most
    /// [`crate::samples::MAX_SAMPLES`] of them (thinned evenly on long runs).
    pub samples: Vec<SamplePoint>,
    /// When the source stopped the guest (its `STOP` event), ms since `migrate`: where
    /// `paused_ms` begins.
    pub paused_at_ms: Option<u64>,
    /// The plan's limits, convergence settings and policy, as the plan's own words, so
    /// the report (and a chart drawn from it) stands alone.
    pub plan: PlanSettings,
    /// Time spent in each phase.
    pub phases: Vec<PhaseTiming>,
    /// What went wrong, when the VM did not move, in words.
    pub error: Option<String>,
    /// The same, typed: `kind` says which (`policy`, `device`, `not_ready`, ...).
    pub reason: Option<Reason>,
    /// What the backend could do, so the report says which guarantees held (e.g. the
    /// guest held at `pre-switchover` while devices were checked); `null` when the run
    /// ended before it was known.
    pub capabilities: Option<Capabilities>,
    /// Where the source was at the end (QEMU run state), when known.
    pub source_state: Option<RunState>,
    /// Where the destination was at the end, when known.
    pub destination_state: Option<RunState>,
    /// What the run noted on the way, in order: fallbacks it took, what it found and
    /// repaired, and what it did to the VM that its operator should know (a libvirt
    /// domain marked tainted).
    pub notes: Vec<String>,
    /// What became of the run's webhooks; `null` when the run had none. The engine
    /// leaves it so: the caller that delivers them fills it in.
    pub notify: Option<NotifyCounts>,
}

/// What became of a run's webhook deliveries, one per event and URL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotifyCounts {
    /// Delivered: the receiver answered 2xx.
    pub sent: u64,
    /// Tried and given up on: every try failed, or the receiver refused the request
    /// (a redirect, a 4xx other than 408 and 429), or the run ended first.
    pub failed: u64,
    /// Never tried: progress events left out while the queue was full, or still queued
    /// when the run ended.
    pub dropped: u64,
}

impl Report {
    /// A report with nothing measured yet, for `plan`, ended in `phase`.
    fn empty(plan: &Plan, clock: PhaseClock) -> Self {
        let (phase, phases) = clock.finish();
        Report {
            vm: plan.vm.name.clone(),
            result: Outcome::Failed,
            running_on: RunningOn::Unknown,
            changed: false,
            failed: true,
            msg: String::new(),
            rc: ExitStatus::NeedsAttention.code(),
            phase,
            downtime_ms: None,
            paused_ms: None,
            total_ms: 0,
            setup_ms: None,
            transferred_bytes: 0,
            vfio_transferred_bytes: None,
            stream: None,
            passes: 0,
            peak_dirty_rate: None,
            downtime_limit_ms: plan.limits.downtime.as_millis() as u64,
            switchover_latency_us: None,
            switchover_reply_us: None,
            actions: Vec::new(),
            devices: Vec::new(),
            gate_opened_ms: None,
            pass_history: Vec::new(),
            samples: Vec::new(),
            paused_at_ms: None,
            plan: PlanSettings::of(plan),
            phases,
            error: None,
            reason: None,
            capabilities: None,
            source_state: None,
            destination_state: None,
            notes: Vec::new(),
            notify: None,
        }
    }

    /// The report for hosts that are not ready: nothing was changed. Where the VM runs
    /// is what both sides said (`unknown` when they could not be asked); a state only a
    /// person can judge is exit 4, anything else exit 3.
    pub(crate) fn not_ready(
        plan: &Plan,
        clock: PhaseClock,
        problems: Vec<Problem>,
        sides: Option<Sides>,
        sink: &mut dyn EventSink,
    ) -> Self {
        sink.emit(EngineEvent::NotReady {
            problems: problems.iter().map(ToString::to_string).collect(),
        });
        let for_a_person = problems.iter().any(Problem::needs_a_person);
        let reason = Reason::NotReady { problems };
        let mut report = Report::empty(plan, clock);
        report.result = Outcome::Failed;
        report.running_on = sides.as_ref().map_or(RunningOn::Unknown, Sides::running_on);
        report.rc = match for_a_person {
            true => ExitStatus::NeedsAttention,
            false => ExitStatus::NotReady,
        }
        .code();
        report.finish_words(Some(reason), sides);
        report
    }

    /// The report for a VM that already runs (or is held) on the destination: nothing to
    /// do, nothing changed, exit 0.
    pub(crate) fn already_migrated(
        plan: &Plan,
        clock: PhaseClock,
        sides: Sides,
        sink: &mut dyn EventSink,
    ) -> Self {
        sink.emit(EngineEvent::Note {
            message: "already migrated: the destination runs the VM; nothing to do".into(),
        });
        let mut report = Report::empty(plan, clock);
        report.result = Outcome::Migrated;
        report.running_on = RunningOn::Destination;
        report.changed = false;
        report.rc = ExitStatus::Migrated.code();
        report.finish_words(None, Some(sides));
        report.msg = "already migrated: the destination runs the VM; nothing was changed".into();
        report
    }

    /// Sets the reason, its words, `failed`, `msg` and both sides' states.
    fn finish_words(&mut self, reason: Option<Reason>, sides: Option<Sides>) {
        self.error = reason.as_ref().map(ToString::to_string);
        self.failed = self.rc != ExitStatus::Migrated.code();
        self.msg = match &self.error {
            Some(error) => error.clone(),
            None => format!("migrated: {} runs on the destination", self.vm),
        };
        self.reason = reason;
        if let Some(sides) = sides {
            self.source_state = Some(sides.source);
            self.destination_state = Some(sides.destination);
        }
    }

    /// The report of a run that reached the hosts: what was observed, why it ended
    /// (`None`: completed), and where the VM is.
    pub(crate) fn of_run(run: &mut Run<'_>, reason: Option<Reason>, place: Where) -> Self {
        let clock = std::mem::replace(&mut run.clock, PhaseClock::new(Phase::Verify));
        let mut report = Report::empty(run.plan, clock);
        let reason = match (reason, place.running_on) {
            (None, RunningOn::Destination) => None,
            (None, _) => Some(Reason::NotConfirmed),
            (reason, _) => reason,
        };
        let outcome = reason.as_ref().map_or(Outcome::Migrated, Reason::outcome);
        report.result = outcome;
        report.running_on = place.running_on;
        report.changed = outcome == Outcome::Migrated;
        report.capabilities = run.capabilities;
        report.take_observations(&mut run.seen);
        report.rc = match (report.exit_status(), &reason) {
            (ExitStatus::NotMigrated, Some(Reason::Interrupted)) => ExitStatus::Interrupted,
            (code, _) => code,
        }
        .code();
        report.finish_words(reason, None);
        report.source_state = Some(place.source);
        report.destination_state = Some(place.destination);
        report.notes = std::mem::take(&mut run.notes);
        report
    }

    /// Moves what the run observed into the report.
    fn take_observations(&mut self, seen: &mut Observed) {
        let seen = std::mem::replace(seen, Observed::default_for(self.downtime_limit_ms));
        self.total_ms = seen.started.map_or(0, |s| s.elapsed().as_millis() as u64);
        if let Some(s) = &seen.last_sample {
            self.downtime_ms = s.downtime_ms;
            self.setup_ms = s.setup_time_ms;
            self.transferred_bytes = s.transferred_bytes;
            self.vfio_transferred_bytes = s.vfio_transferred_bytes;
            self.stream = Some(s.stream.clone());
            self.passes = s.dirty_sync_count;
            if let Some(total) = s.total_time_ms.filter(|_| self.result == Outcome::Migrated) {
                self.total_ms = total;
            }
        }
        self.paused_ms = seen.paused_ms();
        self.paused_at_ms = seen.source_stopped_at.map(|at| seen.ms_since_start(at));
        self.peak_dirty_rate = seen.history.iter().map(|r| r.dirty_rate).max();
        self.downtime_limit_ms = seen.downtime_limit_ms.max(self.downtime_limit_ms);
        self.switchover_latency_us = seen.switchover_latency.map(|d| d.as_micros() as u64);
        self.switchover_reply_us = seen.switchover_reply.map(|d| d.as_micros() as u64);
        self.devices = seen.gate.report();
        self.gate_opened_ms = seen.gate.opened_at_ms().filter(|_| !self.devices.is_empty());
        self.actions = seen.actions;
        self.pass_history = seen.history;
        self.samples = seen.samples.into_points();
    }

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
