//! The phase script: one linear function that reads top to bottom as the migration goes.
//!
//! ```text
//! connect ─ preflight ─ configure ─ listen ─ migrate ─ converge ─┬─ switchover ─ verify ─▶ migrated
//!    │          │                                                └─ recover ────────────▶ aborted / failed
//!    └──────────┴──▶ not ready (nothing was changed)
//! ```
//!
//! Two promises hold on every path: the destination is started only after QEMU reports
//! the migration completed, and after a cancel or failure the source is confirmed running
//! (resumed if it was left paused) unless the destination already runs the VM.

use std::time::Duration;

use tokio::time::Instant;

use plans::{Plan, Step, ThrottleMethod};
use tokio::sync::watch;

use crate::converge::{Converge, LoopEnd};
use crate::driver::{Driver, DriverEvent, Sample, Setup, Side};
use crate::events::{EngineEvent, EventSink};
use crate::gate::DeviceGate;
use crate::phase::{Phase, PhaseClock};
use crate::policy::PassRecord;
use crate::preflight;
use crate::report::{ActionRecord, ExitStatus, Outcome, Report, RunningOn};

/// What the run observed, gathered for the report.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) history: Vec<PassRecord>,
    pub(crate) actions: Vec<ActionRecord>,
    pub(crate) last_sample: Option<Sample>,
    pub(crate) source_stopped_at: Option<Instant>,
    pub(crate) resumed_at: Option<(Side, Instant)>,
    pub(crate) throttled: bool,
    pub(crate) stopped_by_us: bool,
    pub(crate) switchover_latency: Option<Duration>,
    pub(crate) gate: DeviceGate,
    /// When `migrate` was sent.
    pub(crate) started: Option<Instant>,
}

impl Observed {
    fn new() -> Self {
        Observed {
            history: Vec::new(),
            actions: Vec::new(),
            last_sample: None,
            source_stopped_at: None,
            resumed_at: None,
            throttled: false,
            stopped_by_us: false,
            switchover_latency: None,
            gate: DeviceGate::new(Vec::new(), Instant::now(), Duration::ZERO),
            started: None,
        }
    }

    /// Notes what an event says about pauses. Device states are the gate's business
    /// while the convergence loop runs; afterwards see [`Observed::record_late`].
    pub(crate) fn record(&mut self, event: &DriverEvent) {
        match event {
            DriverEvent::Stop {
                side: Side::Source,
                at,
            } => self.source_stopped_at = Some(*at),
            DriverEvent::Resume { side, at } if self.source_stopped_at.is_some() => {
                self.resumed_at.get_or_insert((*side, *at));
            }
            _ => {}
        }
    }

    /// Records an event that arrives after the convergence loop, for the report.
    pub(crate) fn record_late(&mut self, event: &DriverEvent, status: &str) {
        self.record(event);
        if let DriverEvent::DeviceState {
            side: Side::Source,
            id,
            qom_path,
            state,
            at,
        } = event
        {
            self.gate.record(id, qom_path, state.clone(), *at, status);
        }
    }

    fn paused_ms(&self) -> Option<u64> {
        let stop = self.source_stopped_at?;
        let (_, resume) = self.resumed_at?;
        Some(resume.saturating_duration_since(stop).as_millis() as u64)
    }
}

/// How long to wait for a cancel to take effect, or for completion after switchover.
pub(crate) const SETTLE: Duration = Duration::from_secs(15);

/// Migrates the plan's VM. Never panics on what the hypervisors say; every path ends in a
/// report that says where the VM runs.
pub async fn migrate<D: Driver>(
    plan: &Plan,
    driver: &mut D,
    sink: &mut dyn EventSink,
    mut interrupt: watch::Receiver<bool>,
) -> Report {
    let mut clock = PhaseClock::new(Phase::Connect);
    let mut seen = Observed::new();
    sink.emit(EngineEvent::Phase {
        phase: Phase::Connect,
    });

    // Connect and preflight change nothing: a failure here leaves the VM as it was.
    if let Err(e) = driver.connect().await {
        return not_ready(plan, clock, vec![e.to_string()], sink);
    }
    let mut events = driver.take_events();

    enter(&mut clock, sink, Phase::Preflight);
    let facts = match driver.inspect().await {
        Ok(f) => f,
        Err(e) => return not_ready(plan, clock, vec![e.to_string()], sink),
    };
    sink.emit(EngineEvent::Facts { facts: facts.clone() });
    let mut problems = preflight::problems(plan, &facts);
    let found = match driver.vfio_devices().await {
        Ok(found) => found,
        Err(e) => return not_ready(plan, clock, vec![e.to_string()], sink),
    };
    let devices = preflight::devices(plan, &found);
    problems.extend(devices.problems);
    for note in devices.notes {
        sink.emit(EngineEvent::Note { message: note });
    }
    if problems.is_empty() {
        for (id, qom_path) in &devices.enable_events {
            match driver.enable_migration_events(qom_path).await {
                Ok(()) => sink.emit(EngineEvent::Note {
                    message: format!("turned on migration-events for VFIO device {id} with qom-set"),
                }),
                Err(e) => problems.push(preflight::events_off_problem(id, &e.to_string())),
            }
        }
    }
    if !problems.is_empty() {
        return not_ready(plan, clock, problems, sink);
    }
    if *interrupt.borrow() {
        return finish(plan, driver, &mut events, sink, clock, seen, Ending::Interrupted).await;
    }

    // From here on the hosts change; every way out goes through `finish` (verify or
    // recover) below.
    let start_limit = plan.limits.downtime.as_millis() as u64;
    let (ending, downtime_limit_ms) = 'change: {
        let uri = plan.migration_uri().unwrap_or_default().to_string();
        enter(&mut clock, sink, Phase::Configure);
        let setup = Setup {
            downtime_limit_ms: start_limit,
            max_bandwidth: plan.limits.max_bandwidth.map(|r| r.bytes_per_sec()),
            arm_auto_converge: plan.policy.escalation.contains(&Step::Throttle)
                && plan.policy.throttle == ThrottleMethod::AutoConverge,
            switchover_ack: plan.devices.iter().any(|d| d.precopy),
        };
        if let Err(e) = driver.configure(&setup).await {
            break 'change (Ending::Failed(e.to_string()), start_limit);
        }

        if let Some(listen) = &plan.destination.listen {
            enter(&mut clock, sink, Phase::Listen);
            if let Err(e) = driver.listen(listen).await {
                break 'change (Ending::Failed(e.to_string()), start_limit);
            }
        }

        enter(&mut clock, sink, Phase::Migrate);
        let started = Instant::now();
        seen.started = Some(started);
        seen.gate = DeviceGate::new(devices.follow, started, plan.limits.saving_timeout);
        if let Err(e) = driver.start(&uri).await {
            break 'change (Ending::Failed(e.to_string()), start_limit);
        }

        enter(&mut clock, sink, Phase::Converge);
        let (end, downtime_limit_ms) = {
            let mut converge = Converge::new(
                plan,
                driver,
                sink,
                &mut events,
                &mut interrupt,
                &mut seen,
                started,
                facts.source.kvm,
                facts.source.dirty_ring_size.is_some(),
            );
            let end = converge.run().await;
            (end, converge.state.downtime_limit_ms)
        };

        let ending = match end {
            LoopEnd::PreSwitchover(at) => {
                enter(&mut clock, sink, Phase::Switchover);
                // Device events sent before QEMU paused are already queued: take them in.
                while let Ok(event) = events.try_recv() {
                    seen.record_late(&event, "pre-switchover");
                }
                let refusal = match seen.gate.check_switchover() {
                    Err(violation) => Some(violation.to_string()),
                    Ok(()) => pause_too_long(plan, &seen),
                };
                if let Some(reason) = refusal {
                    break 'change (Ending::Aborted(reason), downtime_limit_ms);
                }
                // QEMU has stopped the VM; every microsecond here is guest downtime.
                match driver.continue_switchover().await {
                    Ok(()) => {
                        seen.switchover_latency = Some(at.elapsed());
                        crate::verify::wait_for_completion(
                            driver,
                            &mut events,
                            &mut seen,
                            plan.limits.max_downtime * 2,
                        )
                        .await
                    }
                    Err(e) => Ending::Failed(format!("could not continue at pre-switchover: {e}")),
                }
            }
            LoopEnd::Completed => Ending::Completed,
            LoopEnd::Abort(reason) => Ending::Aborted(match seen.history.last() {
                Some(last) => format!("pass {}: {reason}", last.pass),
                None => reason.to_string(),
            }),
            LoopEnd::Device(violation) => Ending::Aborted(violation.to_string()),
            LoopEnd::Interrupted => Ending::Interrupted,
            LoopEnd::Failed(e) => Ending::Failed(e),
        };
        (ending, downtime_limit_ms)
    };
    let mut report = finish(plan, driver, &mut events, sink, clock, seen, ending).await;
    report.downtime_limit_ms = downtime_limit_ms.max(report.downtime_limit_ms);
    // Drain what is left so late events do not pile up in the channel.
    while events.try_recv().is_ok() {}
    report
}

/// At `pre-switchover`: the pause that continuing would cause, when it exceeds the plan's
/// ceiling. QEMU's switchover test counts only the device state the device reports; a
/// plan that declares more is not continued into a pause longer than it allows.
fn pause_too_long(plan: &Plan, seen: &Observed) -> Option<String> {
    let sample = seen.last_sample.as_ref()?;
    let bandwidth = match sample.bandwidth {
        0 => plan.limits.max_bandwidth?.bytes_per_sec(),
        b => b,
    };
    let pending = sample.remaining_bytes + plan.device_state_bytes();
    let pause_ms = (pending as f64 / bandwidth as f64 * 1000.0) as u64;
    let max_ms = plan.limits.max_downtime.as_millis() as u64;
    (pause_ms > max_ms).then(|| {
        format!(
            "switching over now would pause the guest about {pause_ms}ms ({} of RAM and declared device state at {}/s), more than limits.max_downtime ({max_ms}ms)",
            plans::units::format_bytes(pending),
            plans::units::format_bytes(bandwidth)
        )
    })
}

/// How the migration part ended, before verification.
#[derive(Debug)]
pub(crate) enum Ending {
    Completed,
    Aborted(String),
    Interrupted,
    Failed(String),
}

fn enter(clock: &mut PhaseClock, sink: &mut dyn EventSink, phase: Phase) {
    clock.enter(phase);
    sink.emit(EngineEvent::Phase { phase });
}

fn not_ready(plan: &Plan, clock: PhaseClock, problems: Vec<String>, sink: &mut dyn EventSink) -> Report {
    sink.emit(EngineEvent::NotReady {
        problems: problems.clone(),
    });
    let (phase, phases) = clock.finish();
    let mut report = empty_report(plan, phase, phases);
    report.result = Outcome::Failed;
    report.running_on = RunningOn::Source;
    report.error = Some(problems.join("; "));
    report.rc = ExitStatus::NotReady as i32;
    report
}

fn empty_report(plan: &Plan, phase: Phase, phases: Vec<crate::phase::PhaseTiming>) -> Report {
    Report {
        vm: plan.vm.name.clone(),
        result: Outcome::Failed,
        running_on: RunningOn::Unknown,
        changed: false,
        rc: ExitStatus::NeedsAttention as i32,
        phase: phase.name().to_string(),
        downtime_ms: None,
        paused_ms: None,
        total_ms: 0,
        setup_ms: None,
        transferred_bytes: 0,
        vfio_transferred_bytes: None,
        passes: 0,
        peak_dirty_rate: None,
        downtime_limit_ms: plan.limits.downtime.as_millis() as u64,
        switchover_latency_us: None,
        actions: Vec::new(),
        devices: Vec::new(),
        gate_opened_ms: None,
        pass_history: Vec::new(),
        phases,
        error: None,
        source_state: None,
        destination_state: None,
    }
}

/// Verifies (after completion) or recovers (after anything else), then builds the report.
async fn finish<D: Driver>(
    plan: &Plan,
    driver: &mut D,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<DriverEvent>,
    sink: &mut dyn EventSink,
    mut clock: PhaseClock,
    mut seen: Observed,
    ending: Ending,
) -> Report {
    let started = seen.started;
    let (outcome, error, interrupted) = match ending {
        Ending::Completed => {
            enter(&mut clock, sink, Phase::Verify);
            (Outcome::Migrated, None, false)
        }
        Ending::Aborted(reason) => {
            enter(&mut clock, sink, Phase::Recover);
            (Outcome::Aborted, Some(reason), false)
        }
        Ending::Interrupted => {
            enter(&mut clock, sink, Phase::Recover);
            (
                Outcome::Aborted,
                Some("interrupted by the operator".to_string()),
                true,
            )
        }
        Ending::Failed(e) => {
            enter(&mut clock, sink, Phase::Recover);
            (Outcome::Failed, Some(e), false)
        }
    };

    let (running_on, src_state, dst_state, mut notes) = if outcome == Outcome::Migrated {
        crate::verify::verify(plan, driver).await
    } else {
        crate::recover::recover(driver, &mut seen).await
    };
    // The guest-visible pause ends with a RESUME, which trails `cont`'s reply.
    let until = Instant::now() + Duration::from_secs(1);
    while seen.source_stopped_at.is_some() && seen.resumed_at.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(event)) => seen.record_late(&event, "completed"),
            _ => break,
        }
    }
    for note in notes.drain(..) {
        sink.emit(EngineEvent::Note { message: note });
    }

    let (phase, phases) = clock.finish();
    let mut report = empty_report(plan, phase, phases);
    let outcome = match (outcome, running_on) {
        (Outcome::Migrated, RunningOn::Destination) => Outcome::Migrated,
        (Outcome::Migrated, _) => Outcome::Failed,
        (other, _) => other,
    };
    report.result = outcome;
    report.running_on = running_on;
    report.changed = outcome == Outcome::Migrated;
    report.error = match (outcome, error) {
        (Outcome::Migrated, _) => None,
        (_, Some(e)) => Some(e),
        (_, None) => Some("the destination could not be confirmed running".into()),
    };
    report.total_ms = started.map_or(0, |s| s.elapsed().as_millis() as u64);
    if let Some(s) = &seen.last_sample {
        report.downtime_ms = s.downtime_ms;
        report.setup_ms = s.setup_time_ms;
        report.transferred_bytes = s.transferred_bytes;
        report.vfio_transferred_bytes = s.vfio_transferred_bytes;
        report.passes = s.dirty_sync_count;
        if let Some(total) = s.total_time_ms.filter(|_| outcome == Outcome::Migrated) {
            report.total_ms = total;
        }
    }
    report.paused_ms = seen.paused_ms();
    report.peak_dirty_rate = seen.history.iter().map(|r| r.dirty_rate).max();
    report.switchover_latency_us = seen.switchover_latency.map(|d| d.as_micros() as u64);
    report.devices = seen.gate.report();
    report.gate_opened_ms = seen.gate.opened_at_ms().filter(|_| !report.devices.is_empty());
    report.actions = seen.actions;
    report.pass_history = seen.history;
    report.source_state = src_state;
    report.destination_state = dst_state;
    report.rc = match (report.exit_status(), interrupted) {
        (ExitStatus::NotMigrated, true) => ExitStatus::Interrupted,
        (code, _) => code,
    } as i32;
    report
}
