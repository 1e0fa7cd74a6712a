//! The convergence loop: read statistics every sample interval, measure the kernel's
//! dirty rate, record each dirty-sync boundary, ask the policy, carry out its decision.
//!
//! It ends when QEMU waits at `pre-switchover`, when the migration ends on its own, when
//! the policy aborts, or when the operator interrupts.

use std::time::Duration;

use tokio::time::Instant;

use plans::{DirtyRateSource, KernelDirtyMode};

use crate::controls::{Controls, ShareInForce};
use crate::driver::{DirtyRateMode, DriverError, DriverEvent, MigrationStatus, Sample, Side, SideFacts};
use crate::events::{EngineEvent, Progress};
use crate::gate::GateViolation;
use crate::outcome::Reason;
use crate::policy::{self, Action, Applied, Because, Context, Decision, PassRecord, PolicyState};
use crate::report::ActionRecord;
use crate::samples::SamplePoint;
use crate::state::{display_id, Run};

/// How the loop ended.
#[derive(Debug)]
pub(crate) enum LoopEnd {
    /// QEMU stopped the VM and waits for `migrate-continue`; the instant the event arrived.
    PreSwitchover(Instant),
    /// The migration completed without stopping at pre-switchover.
    Completed,
    /// The migration cannot go on, for this reason.
    Stopped(Reason),
}

impl From<GateViolation> for LoopEnd {
    fn from(violation: GateViolation) -> Self {
        LoopEnd::Stopped(Reason::Device { violation })
    }
}

/// Where dirty rates come from during this run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RateSource {
    Kernel(DirtyRateMode),
    Stats,
}

impl RateSource {
    fn name(self) -> &'static str {
        match self {
            RateSource::Kernel(DirtyRateMode::DirtyRing) => "kernel:dirty-ring",
            RateSource::Kernel(DirtyRateMode::DirtyBitmap) => "kernel:dirty-bitmap",
            RateSource::Stats => "stats",
        }
    }
}

/// A finished kernel dirty-rate measurement.
#[derive(Debug, Clone)]
struct Measurement {
    bytes_per_sec: u64,
    per_vcpu: Vec<u64>,
    /// When it began (just before it was asked for).
    since: Instant,
}

/// QEMU's statistics rate (`ram.dirty-pages-rate`) changes at a sync at least a second
/// after the last change and covers the time since: when it last changed is when the
/// window of the current value began.
#[derive(Debug, Clone, Copy)]
struct StatsRate {
    value: u64,
    since: Instant,
    changed_at: Instant,
}

impl StatsRate {
    fn new(at: Instant) -> Self {
        StatsRate {
            value: 0,
            since: at,
            changed_at: at,
        }
    }

    fn update(&mut self, value: u64, at: Instant) {
        if value != self.value {
            self.since = self.changed_at;
            self.changed_at = at;
            self.value = value;
        }
    }
}

/// Before the migration starts: puts in force a share of the bandwidth budget that
/// changed since the run configured its cap.
pub(crate) async fn follow_share(run: &mut Run<'_>, controls: &mut Controls) -> Result<(), DriverError> {
    let Some(share) = controls.bandwidth.as_mut().filter(|s| s.is_changed()) else {
        return Ok(());
    };
    let cap = share.take();
    run.driver.set_max_bandwidth(cap).await?;
    share.put_in_force(cap);
    run.note(ShareInForce(cap).to_string());
    Ok(())
}

/// How long after QEMU's `MIGRATION_PASS` the loop reads the boundary. QEMU syncs the
/// dirty log once more right before it stops the guest for the switchover (on an idle
/// guest here the pass event came 0.3–1.2 ms before `STOP`, and `pre-switchover` about a
/// millisecond after that): a query sent on the event would wait in QEMU's monitor
/// through the pause and be answered ahead of `migrate-continue`, which it delayed by
/// about 0.15 ms at the median.
const PASS_SETTLE: Duration = Duration::from_millis(10);

/// How long after the source's `STOP` the loop asks nothing, waiting for
/// `pre-switchover`; a guest that someone else paused is read again after it.
const STOP_SETTLE: Duration = Duration::from_millis(50);

/// The loop's working state.
pub(crate) struct Converge<'r, 'a> {
    run: &'r mut Run<'a>,
    controls: &'r mut Controls,
    started: Instant,
    state: PolicyState,
    ctx: Context,
    rate_source: RateSource,
    kernel_rate: Option<Measurement>,
    /// When the kernel measurement under way began.
    measuring: Option<Instant>,
    stats_rate: StatsRate,
    last_sync: u64,
    hard_deadline: Duration,
    status: MigrationStatus,
    deferred_noted: bool,
    /// When the next read is due, with nothing asked before it: after QEMU announced a
    /// boundary ([`PASS_SETTLE`]) or stopped the guest ([`STOP_SETTLE`]).
    read_at: Option<Instant>,
}

impl<'r, 'a> Converge<'r, 'a> {
    /// A loop for the migration `run` started at `started`, on a source described by
    /// `source`.
    pub(crate) fn new(
        run: &'r mut Run<'a>,
        controls: &'r mut Controls,
        started: Instant,
        source: &SideFacts,
    ) -> Self {
        let plan = run.plan;
        let rate_source = rate_source(run, source);
        let state = PolicyState {
            downtime_limit_ms: plan.limits.downtime.as_millis() as u64,
            ..PolicyState::default()
        };
        Converge {
            run,
            controls,
            started,
            state,
            ctx: Context::of(plan),
            rate_source,
            kernel_rate: None,
            measuring: None,
            stats_rate: StatsRate::new(started),
            last_sync: 0,
            hard_deadline: plan.limits.deadline,
            status: MigrationStatus::Setup,
            deferred_noted: false,
            read_at: None,
        }
    }

    /// Runs until the migration needs the engine for something else.
    pub(crate) async fn until_decided(&mut self) -> LoopEnd {
        let mut tick = tokio::time::interval(self.run.plan.convergence.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Events read while a sample was in flight come first, in order.
            if let Some(event) = self.run.early.pop_front() {
                if let Some(end) = self.on_event(Some(event)).await {
                    return end;
                }
                continue;
            }
            let Controls { interrupt, bandwidth } = &mut *self.controls;
            let share_changed = async {
                match bandwidth.as_mut() {
                    Some(share) => share.changed().await,
                    None => std::future::pending().await,
                }
            };
            let read_at = self.read_at;
            let due = async {
                match read_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let end = tokio::select! {
                biased;
                changed = interrupt.changed() => match changed {
                    Ok(()) if *interrupt.borrow() => Some(LoopEnd::Stopped(Reason::Interrupted)),
                    _ => None,
                },
                () = share_changed => self.on_share_changed().await,
                event = self.run.next_event() => self.on_event(event).await,
                () = due => {
                    tick.reset();
                    self.on_tick().await
                }
                // A read is already due shortly: the tick waits for it.
                _ = tick.tick(), if read_at.is_none() => self.on_tick().await,
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// The run's share of an evacuation's bandwidth budget changed: put it in force,
    /// unless QEMU holds the guest at `pre-switchover` meanwhile (the final stage is
    /// QEMU's own and not rate-limited).
    async fn on_share_changed(&mut self) -> Option<LoopEnd> {
        let share = self.controls.bandwidth.as_mut()?;
        let cap = share.take();
        match self.run.unless_held(|driver| driver.set_max_bandwidth(cap)).await {
            Ok(Ok(())) => {
                share.put_in_force(cap);
                self.ctx.fallback_bandwidth = Some(cap);
                self.run.note(ShareInForce(cap).to_string());
                None
            }
            Ok(Err(error)) => Some(LoopEnd::Stopped(Reason::failed_request(error))),
            Err((event, at)) => {
                self.run.seen.record(&event);
                Some(LoopEnd::PreSwitchover(at))
            }
        }
    }

    async fn on_event(&mut self, event: Option<DriverEvent>) -> Option<LoopEnd> {
        let Some(event) = event else {
            return Some(LoopEnd::Stopped(Reason::EventsClosed));
        };
        self.run.seen.record(&event);
        match event {
            DriverEvent::DeviceState {
                side: Side::Source,
                id,
                qom_path,
                state,
                at,
            } => {
                self.run.sink.emit(EngineEvent::Device {
                    id: display_id(&id, &qom_path),
                    state: state.name().to_string(),
                    at_ms: at.saturating_duration_since(self.started).as_millis() as u64,
                });
                let was_open = self.run.seen.gate.is_open();
                match self
                    .run
                    .seen
                    .gate
                    .on_state(&id, &qom_path, state, at, self.status.as_str())
                {
                    Err(violation) => Some(violation.into()),
                    Ok(()) => {
                        self.on_gate_change(was_open);
                        None
                    }
                }
            }
            DriverEvent::DeviceDeleted {
                side: Side::Source,
                id,
                qom_path,
                at,
            } => self
                .run
                .seen
                .gate
                .on_deleted(id.as_deref(), &qom_path, at)
                .err()
                .map(LoopEnd::from),
            DriverEvent::Migration {
                status: MigrationStatus::PreSwitchover,
                at,
            } => Some(LoopEnd::PreSwitchover(at)),
            DriverEvent::Migration { status, .. } if status.is_final() => self.on_tick().await,
            // A new pass began: read its boundary soon rather than up to one interval
            // late, but not before QEMU has had the time to stop the guest if this sync
            // was the last.
            DriverEvent::Pass { .. } => {
                self.read_at.get_or_insert(Instant::now() + PASS_SETTLE);
                None
            }
            // QEMU is stopping the guest, for the switchover (`pre-switchover` follows
            // within about a millisecond) or because someone paused it: a query now would
            // wait through the pause.
            DriverEvent::Stop {
                side: Side::Source, ..
            } => {
                self.read_at = Some(Instant::now() + STOP_SETTLE);
                None
            }
            DriverEvent::Disconnected { side, reason } => {
                Some(LoopEnd::Stopped(Reason::ConnectionLost { side, why: reason }))
            }
            _ => None,
        }
    }

    async fn on_tick(&mut self) -> Option<LoopEnd> {
        self.read_at = None;
        // QEMU may stop the guest for the switchover while the query is out (a tick
        // that came just before the last sync): the event ends the wait, since
        // QEMU answers the query before `migrate-continue` and every microsecond here is
        // the guest's.
        let sample = match self.run.unless_held(|driver| driver.sample()).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => return Some(LoopEnd::Stopped(Reason::failed_request(error))),
            Err((event, at)) => {
                self.run.seen.record(&event);
                return Some(LoopEnd::PreSwitchover(at));
            }
        };
        self.run.seen.peak_bandwidth = self.run.seen.peak_bandwidth.max(sample.bandwidth);
        self.run.seen.last_sample = Some(sample.clone());
        self.run.seen.samples.push(SamplePoint::of(&sample, self.started));
        self.status = sample.status.clone();
        if sample.status == MigrationStatus::Active {
            let was_open = self.run.seen.gate.is_open();
            self.run.seen.gate.on_active(Instant::now());
            self.on_gate_change(was_open);
        }
        if let Err(violation) = self.run.seen.gate.check_timeout(Instant::now()) {
            return Some(violation.into());
        }
        if let Some(end) = ended(&sample) {
            return Some(end);
        }
        self.stats_rate.update(sample.stats_dirty_rate(), sample.at);
        if let Err((event, at)) = self.poll_kernel_rate(&sample).await {
            self.run.seen.record(&event);
            return Some(LoopEnd::PreSwitchover(at));
        }
        self.emit_progress(&sample);
        if sample.dirty_sync_count > self.last_sync && sample.status == MigrationStatus::Active {
            if self.last_sync > 0 || sample.dirty_sync_count > 1 {
                // The first sync happens in setup, before anything is sent: no boundary.
                if let Some(end) = self.on_boundary(&sample).await {
                    return Some(end);
                }
            }
            self.last_sync = sample.dirty_sync_count;
        }
        if self.started.elapsed() >= self.hard_deadline {
            return self.on_deadline().await;
        }
        None
    }

    /// Reads the kernel measurement under way and starts the next one. Like the
    /// sample, both give way to `pre-switchover` (`Err`).
    async fn poll_kernel_rate(&mut self, sample: &Sample) -> Result<(), (DriverEvent, Instant)> {
        let RateSource::Kernel(mode) = self.rate_source else {
            return Ok(());
        };
        if sample.status != MigrationStatus::Active || self.run.driver.kernel_dirty_rate().is_none() {
            return Ok(());
        }
        let calc_time = self.run.plan.convergence.calc_time;
        if let Some(since) = self.measuring {
            let reading = self
                .run
                .unless_held(|driver| match driver.kernel_dirty_rate() {
                    Some(kernel) => kernel.dirty_rate(),
                    None => Box::pin(async { Ok(None) }),
                })
                .await?;
            match reading {
                Ok(Some(rate)) => {
                    self.kernel_rate = Some(Measurement {
                        bytes_per_sec: rate.bytes_per_sec,
                        per_vcpu: rate.per_vcpu,
                        since,
                    });
                    self.measuring = None;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.fall_back_to_stats(&e.to_string());
                    return Ok(());
                }
            }
        }
        // Taken before asking: a measurement never counts as starting later than it did.
        let since = Instant::now();
        let started = self
            .run
            .unless_held(|driver| match driver.kernel_dirty_rate() {
                Some(kernel) => kernel.start_dirty_rate(mode, calc_time),
                None => Box::pin(async { Ok(()) }),
            })
            .await?;
        match started {
            Ok(()) => self.measuring = Some(since),
            Err(e) => self.fall_back_to_stats(&e.to_string()),
        }
        Ok(())
    }

    fn fall_back_to_stats(&mut self, why: &str) {
        self.run.note(format!(
            "kernel dirty-rate measurement unavailable ({why}); using migration statistics"
        ));
        self.rate_source = RateSource::Stats;
        self.measuring = None;
    }

    fn dirty_rate(&self, sample: &Sample) -> Option<u64> {
        match (self.rate_source, &self.kernel_rate) {
            (RateSource::Kernel(_), Some(m)) => Some(m.bytes_per_sec),
            _ => Some(sample.stats_dirty_rate()),
        }
    }

    /// Where [`Self::dirty_rate`] comes from now, in the words of [`RateSource::name`].
    fn dirty_rate_source(&self) -> &'static str {
        match (self.rate_source, &self.kernel_rate) {
            (source @ RateSource::Kernel(_), Some(_)) => source.name(),
            _ => RateSource::Stats.name(),
        }
    }

    /// When the measurement behind [`Self::dirty_rate`] began, and its per-vCPU rates.
    fn rate_window(&self) -> (Instant, Vec<u64>) {
        match (self.rate_source, &self.kernel_rate) {
            (RateSource::Kernel(_), Some(m)) => (m.since, m.per_vcpu.clone()),
            _ => (self.stats_rate.since, Vec::new()),
        }
    }

    fn emit_progress(&mut self, sample: &Sample) {
        let progress = Progress {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            status: sample.status.to_string(),
            total_bytes: sample.total_bytes,
            remaining_bytes: sample.remaining_bytes,
            transferred_bytes: sample.transferred_bytes,
            bandwidth: sample.bandwidth,
            dirty_rate: self.dirty_rate(sample),
            dirty_rate_source: self.rate_source.name().to_string(),
            expected_downtime_ms: self.ctx.pause_ms(sample.remaining_bytes, sample.bandwidth),
            downtime_limit_ms: self.state.downtime_limit_ms,
            pass: sample.dirty_sync_count,
            cpu_throttle_percentage: sample.cpu_throttle_percentage,
        };
        self.run.sink.emit(EngineEvent::Progress(progress));
    }

    async fn on_boundary(&mut self, sample: &Sample) -> Option<LoopEnd> {
        let (rate_since, vcpu_rates) = self.rate_window();
        let record = PassRecord {
            pass: sample.dirty_sync_count,
            elapsed: self.started.elapsed(),
            remaining: sample.remaining_bytes,
            transferred: sample.transferred_bytes,
            dirty_rate: self.dirty_rate(sample).unwrap_or(0),
            dirty_rate_source: self.dirty_rate_source(),
            bandwidth: sample.bandwidth,
            cpu_throttle: sample.cpu_throttle_percentage.unwrap_or(0),
            rate_since: rate_since.saturating_duration_since(self.started),
            vcpu_rates,
        };
        self.run.sink.emit(EngineEvent::Pass(record.clone()));
        self.run.seen.history.push(record);
        if !self.run.seen.gate.is_open() {
            // Dirty data is not trusted until every device is saving.
            if !self.deferred_noted {
                self.deferred_noted = true;
                self.run
                    .note("convergence decisions wait until every VFIO device is saving");
            }
            self.state.since = self.run.seen.history.len();
            return None;
        }
        let decision = policy::decide(self.run.plan, &self.run.seen.history, &self.state, self.ctx);
        self.carry_out(decision).await
    }

    /// When the gate has just opened, only boundaries from now on count.
    fn on_gate_change(&mut self, was_open: bool) {
        if !was_open && self.run.seen.gate.is_open() {
            // The pass under way began before every device was saving: skip it too.
            self.state.since = self.run.seen.history.len() + 1;
            let opened_ms = self.run.seen.gate.opened_at_ms().unwrap_or(0);
            self.run.note(format!(
                "every VFIO device is saving ({opened_ms}ms after migrate): convergence decisions may start"
            ));
        }
    }

    async fn on_deadline(&mut self) -> Option<LoopEnd> {
        let plan = self.run.plan;
        let decision = policy::decide_at_deadline(plan, &self.run.seen.history, &self.state, self.ctx);
        if matches!(decision, Decision::Escalate { .. }) {
            // Forcing at the deadline gets a quarter of the deadline (at least 5 s) to finish.
            let grace = (plan.limits.deadline / 4).max(Duration::from_secs(5));
            self.hard_deadline = self.started.elapsed() + grace;
        }
        self.carry_out(decision).await
    }

    async fn carry_out(&mut self, decision: Decision) -> Option<LoopEnd> {
        let pass = self
            .last_sync
            .max(self.run.seen.history.last().map_or(0, |r| r.pass));
        let (step, action, because, skipped) = match decision {
            Decision::Continue => return None,
            Decision::Abort(abort) => {
                // Recorded like any step, so the abort and the steps passed over on the
                // way to it are in `actions` and on stderr; the cancel itself follows.
                let record = ActionRecord {
                    pass,
                    at: self.started.elapsed(),
                    step: "abort",
                    reason: Because {
                        trigger: abort.trigger,
                        sizing: None,
                    },
                    action: Action::Abort,
                    skipped: abort.skipped,
                    failed: None,
                };
                self.run.sink.emit(EngineEvent::Action(record.clone()));
                self.run.seen.actions.push(record);
                let pass = self.run.seen.history.last().map(|r| r.pass);
                return Some(LoopEnd::Stopped(Reason::Policy {
                    pass,
                    abort: abort.reason,
                }));
            }
            Decision::Escalate {
                step,
                action,
                because,
                skipped,
            } => (step, action, because, skipped),
        };
        let result = self.apply(&action).await;
        let at = self.started.elapsed();
        if result.is_ok() {
            self.note_throttle(&because, at);
        }
        let record = ActionRecord {
            pass,
            at,
            step: self
                .run
                .plan
                .policy
                .escalation
                .get(step)
                .map_or("on-deadline", |s| s.name()),
            reason: because,
            action,
            skipped,
            failed: result.as_ref().err().map(ToString::to_string),
        };
        self.run.sink.emit(EngineEvent::Action(record.clone()));
        self.run.seen.actions.push(record);
        self.state.next_step = step + 1;
        self.state.acted_at = Some(at);
        // The pass under way straddles the action; judge only passes that start after it.
        self.state.since = self.run.seen.history.len() + 1;
        match result {
            Err(error) if error.disconnected => Some(LoopEnd::Stopped(Reason::failed_request(error))),
            _ => None,
        }
    }

    /// Remembers a sized throttle, so the policy can check it at the next boundary.
    fn note_throttle(&mut self, because: &Because, at: Duration) {
        let Some(sizing) = &because.sizing else {
            return;
        };
        let corrections = match (&because.trigger, &self.state.throttle) {
            (policy::Trigger::Check { .. }, Some(applied)) => applied.corrections + 1,
            _ => 0,
        };
        self.state.throttle = Some(Applied {
            setting: sizing.setting,
            target_rate: sizing.target_rate,
            aim: sizing.aim,
            corrections,
            at,
        });
    }

    /// Carries out one policy action on the source.
    async fn apply(&mut self, action: &Action) -> Result<(), crate::driver::DriverError> {
        let driver = &mut *self.run.driver;
        match action {
            Action::Throttle { throttle } => {
                driver.throttle(throttle).await?;
                self.run.seen.throttled = true;
            }
            Action::RaiseDowntime { to_ms } => {
                driver.set_downtime_limit(*to_ms).await?;
                self.state.downtime_limit_ms = *to_ms;
                self.run.seen.downtime_limit_ms = *to_ms;
                self.state.forced = true;
            }
            Action::StopGuest => {
                driver.stop_source().await?;
                self.state.forced = true;
                self.run.seen.stopped_by_us = true;
            }
            // The cancel is recover's first step.
            Action::Abort => {}
        }
        Ok(())
    }
}

/// How the loop ends when QEMU reports the migration over, or waiting at
/// `pre-switchover`.
fn ended(sample: &Sample) -> Option<LoopEnd> {
    match &sample.status {
        MigrationStatus::PreSwitchover => Some(LoopEnd::PreSwitchover(Instant::now())),
        MigrationStatus::Completed => Some(LoopEnd::Completed),
        MigrationStatus::Failed => Some(LoopEnd::Stopped(Reason::MigrationFailed {
            during_switchover: false,
            qemu_error: sample.error.clone(),
        })),
        MigrationStatus::Cancelled => Some(LoopEnd::Stopped(Reason::CancelledElsewhere)),
        _ => None,
    }
}

/// Where this run's dirty rates come from: the kernel's dirty log when the plan asks
/// for it and the backend and accelerator can give it, else QEMU's statistics.
fn rate_source(run: &mut Run<'_>, source: &SideFacts) -> RateSource {
    let convergence = &run.plan.convergence;
    if convergence.dirty_rate == DirtyRateSource::Stats {
        return RateSource::Stats;
    }
    if !source.kvm {
        if convergence.dirty_rate == DirtyRateSource::Kernel {
            run.note("the guest runs under TCG, which has no kernel dirty log: dirty rates come from migration statistics");
        }
        return RateSource::Stats;
    }
    if run.driver.kernel_dirty_rate().is_none() {
        run.note(
            "this backend cannot measure the kernel's dirty rate: dirty rates come from migration statistics",
        );
        return RateSource::Stats;
    }
    RateSource::Kernel(match convergence.kernel_mode {
        KernelDirtyMode::DirtyRing => DirtyRateMode::DirtyRing,
        KernelDirtyMode::DirtyBitmap => DirtyRateMode::DirtyBitmap,
        KernelDirtyMode::Auto if source.dirty_ring_size.is_some() => DirtyRateMode::DirtyRing,
        KernelDirtyMode::Auto => DirtyRateMode::DirtyBitmap,
    })
}
