//! The convergence loop: read statistics every sample interval, measure the kernel's
//! dirty rate, record each dirty-sync boundary, ask the policy, carry out its decision.
//!
//! It ends when QEMU waits at `pre-switchover`, when the migration ends on its own, when
//! the policy aborts, or when the operator interrupts.

use std::time::Duration;

use tokio::time::Instant;

use plans::{DirtyRateSource, KernelDirtyMode, Plan};
use tokio::sync::{mpsc, watch};

use crate::driver::{DirtyRateMode, Driver, DriverEvent, MigrationStatus, Sample, Side};
use crate::events::{EngineEvent, EventSink, Progress};
use crate::policy::{self, Action, Context, Decision, PassRecord, PolicyState};
use crate::report::ActionRecord;
use crate::run::Observed;

/// How the loop ended.
#[derive(Debug)]
pub(crate) enum LoopEnd {
    /// QEMU stopped the VM and waits for `migrate-continue`; the instant the event arrived.
    PreSwitchover(Instant),
    /// The migration completed without stopping at pre-switchover.
    Completed,
    /// The policy decided to cancel.
    Abort(policy::AbortReason),
    /// A VFIO device did not behave as a migration needs.
    Device(crate::gate::GateViolation),
    /// The operator interrupted.
    Interrupted,
    /// The migration failed, or a side stopped answering.
    Failed(String),
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

/// The loop's working state.
pub(crate) struct Converge<'a, D: Driver> {
    pub(crate) plan: &'a Plan,
    pub(crate) driver: &'a mut D,
    pub(crate) sink: &'a mut dyn EventSink,
    pub(crate) events: &'a mut mpsc::UnboundedReceiver<DriverEvent>,
    pub(crate) interrupt: &'a mut watch::Receiver<bool>,
    pub(crate) seen: &'a mut Observed,
    pub(crate) started: Instant,
    pub(crate) state: PolicyState,
    pub(crate) ctx: Context,
    rate_source: RateSource,
    kernel_rate: Option<u64>,
    measuring: bool,
    last_sync: u64,
    hard_deadline: Duration,
    status: MigrationStatus,
    deferred_noted: bool,
}

impl<'a, D: Driver> Converge<'a, D> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        plan: &'a Plan,
        driver: &'a mut D,
        sink: &'a mut dyn EventSink,
        events: &'a mut mpsc::UnboundedReceiver<DriverEvent>,
        interrupt: &'a mut watch::Receiver<bool>,
        seen: &'a mut Observed,
        started: Instant,
        kvm: bool,
        dirty_ring: bool,
    ) -> Self {
        let rate_source = match (plan.convergence.dirty_rate, plan.convergence.kernel_mode) {
            (DirtyRateSource::Stats, _) => RateSource::Stats,
            _ if !kvm => RateSource::Stats,
            (_, KernelDirtyMode::DirtyRing) => RateSource::Kernel(DirtyRateMode::DirtyRing),
            (_, KernelDirtyMode::DirtyBitmap) => RateSource::Kernel(DirtyRateMode::DirtyBitmap),
            (_, KernelDirtyMode::Auto) if dirty_ring => RateSource::Kernel(DirtyRateMode::DirtyRing),
            (_, KernelDirtyMode::Auto) => RateSource::Kernel(DirtyRateMode::DirtyBitmap),
        };
        if plan.convergence.dirty_rate == DirtyRateSource::Kernel && !kvm {
            sink.emit(EngineEvent::Note {
                message: "the guest runs under TCG, which has no kernel dirty log: dirty rates come from migration statistics".into(),
            });
        }
        let state = PolicyState {
            downtime_limit_ms: plan.limits.downtime.as_millis() as u64,
            ..PolicyState::default()
        };
        let ctx = Context {
            device_bytes: plan.device_state_bytes(),
            fallback_bandwidth: plan.limits.max_bandwidth.map(|r| r.bytes_per_sec()),
        };
        Converge {
            plan,
            driver,
            sink,
            events,
            interrupt,
            seen,
            started,
            state,
            ctx,
            rate_source,
            kernel_rate: None,
            measuring: false,
            last_sync: 0,
            hard_deadline: plan.limits.deadline,
            status: MigrationStatus::Setup,
            deferred_noted: false,
        }
    }

    /// Runs until the migration needs the engine for something else.
    pub(crate) async fn run(&mut self) -> LoopEnd {
        let mut tick = tokio::time::interval(self.plan.convergence.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let end = tokio::select! {
                biased;
                changed = self.interrupt.changed() => match changed {
                    Ok(()) if *self.interrupt.borrow() => Some(LoopEnd::Interrupted),
                    _ => None,
                },
                event = self.events.recv() => self.on_event(event).await,
                _ = tick.tick() => self.on_tick().await,
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    async fn on_event(&mut self, event: Option<DriverEvent>) -> Option<LoopEnd> {
        let Some(event) = event else {
            return Some(LoopEnd::Failed("the connection to the hypervisors closed".into()));
        };
        self.seen.record(&event);
        match event {
            DriverEvent::DeviceState {
                side: Side::Source,
                id,
                qom_path,
                state,
                at,
            } => {
                self.sink.emit(EngineEvent::Device {
                    id: if id.is_empty() {
                        qom_path.rsplit('/').next().unwrap_or_default().to_string()
                    } else {
                        id.clone()
                    },
                    state: state.name().to_string(),
                    at_ms: at.saturating_duration_since(self.started).as_millis() as u64,
                });
                let status = status_name(&self.status);
                let was_open = self.seen.gate.is_open();
                match self.seen.gate.on_state(&id, &qom_path, state, at, &status) {
                    Err(violation) => Some(LoopEnd::Device(violation)),
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
                .seen
                .gate
                .on_deleted(id.as_deref(), &qom_path, at)
                .err()
                .map(LoopEnd::Device),
            DriverEvent::Migration {
                status: MigrationStatus::PreSwitchover,
                at,
            } => Some(LoopEnd::PreSwitchover(at)),
            DriverEvent::Migration { status, .. } if status.is_final() => self.on_tick().await,
            // A new pass began: read its boundary now rather than up to one interval late.
            DriverEvent::Pass { .. } => self.on_tick().await,
            DriverEvent::Disconnected { side, reason } => {
                Some(LoopEnd::Failed(format!("{side}: connection lost: {reason}")))
            }
            _ => None,
        }
    }

    async fn on_tick(&mut self) -> Option<LoopEnd> {
        let sample = match self.driver.sample().await {
            Ok(s) => s,
            Err(e) => return Some(LoopEnd::Failed(e.to_string())),
        };
        self.seen.last_sample = Some(sample.clone());
        self.status = sample.status.clone();
        if sample.status == MigrationStatus::Active {
            let was_open = self.seen.gate.is_open();
            self.seen.gate.on_active(Instant::now());
            self.on_gate_change(was_open);
        }
        if let Err(violation) = self.seen.gate.check_timeout(Instant::now()) {
            return Some(LoopEnd::Device(violation));
        }
        match &sample.status {
            MigrationStatus::PreSwitchover => return Some(LoopEnd::PreSwitchover(Instant::now())),
            MigrationStatus::Completed => return Some(LoopEnd::Completed),
            MigrationStatus::Failed => {
                return Some(LoopEnd::Failed(
                    sample.error.clone().unwrap_or_else(|| "migration failed".into()),
                ))
            }
            MigrationStatus::Cancelled => {
                return Some(LoopEnd::Failed("migration was cancelled by someone else".into()))
            }
            _ => {}
        }
        self.poll_kernel_rate(&sample).await;
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

    async fn poll_kernel_rate(&mut self, sample: &Sample) {
        let RateSource::Kernel(mode) = self.rate_source else {
            return;
        };
        if sample.status != MigrationStatus::Active {
            return;
        }
        if self.measuring {
            match self.driver.dirty_rate().await {
                Ok(Some(rate)) => {
                    self.kernel_rate = Some(rate.bytes_per_sec);
                    self.measuring = false;
                }
                Ok(None) => return,
                Err(e) => {
                    self.fall_back_to_stats(&e.to_string());
                    return;
                }
            }
        }
        match self
            .driver
            .start_dirty_rate(mode, self.plan.convergence.calc_time)
            .await
        {
            Ok(()) => self.measuring = true,
            Err(e) => self.fall_back_to_stats(&e.to_string()),
        }
    }

    fn fall_back_to_stats(&mut self, why: &str) {
        self.sink.emit(EngineEvent::Note {
            message: format!("kernel dirty-rate measurement unavailable ({why}); using migration statistics"),
        });
        self.rate_source = RateSource::Stats;
        self.measuring = false;
    }

    fn dirty_rate(&self, sample: &Sample) -> Option<u64> {
        match self.rate_source {
            RateSource::Kernel(_) => self.kernel_rate.or(Some(sample.stats_dirty_rate())),
            RateSource::Stats => Some(sample.stats_dirty_rate()),
        }
    }

    fn expected_downtime_ms(&self, sample: &Sample) -> Option<u64> {
        let bandwidth = if sample.bandwidth > 0 {
            sample.bandwidth
        } else {
            self.ctx.fallback_bandwidth?
        };
        (bandwidth > 0).then(|| {
            ((sample.remaining_bytes + self.ctx.device_bytes) as f64 / bandwidth as f64 * 1000.0) as u64
        })
    }

    fn emit_progress(&mut self, sample: &Sample) {
        let progress = Progress {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            status: status_name(&sample.status),
            total_bytes: sample.total_bytes,
            remaining_bytes: sample.remaining_bytes,
            transferred_bytes: sample.transferred_bytes,
            bandwidth: sample.bandwidth,
            dirty_rate: self.dirty_rate(sample),
            dirty_rate_source: self.rate_source.name().to_string(),
            expected_downtime_ms: self.expected_downtime_ms(sample),
            downtime_limit_ms: self.state.downtime_limit_ms,
            pass: sample.dirty_sync_count,
            cpu_throttle_percentage: sample.cpu_throttle_percentage,
        };
        self.sink.emit(EngineEvent::Progress(progress));
    }

    async fn on_boundary(&mut self, sample: &Sample) -> Option<LoopEnd> {
        let record = PassRecord {
            pass: sample.dirty_sync_count,
            elapsed: self.started.elapsed(),
            remaining: sample.remaining_bytes,
            transferred: sample.transferred_bytes,
            dirty_rate: self.dirty_rate(sample).unwrap_or(0),
            bandwidth: sample.bandwidth,
            cpu_throttle: sample.cpu_throttle_percentage.unwrap_or(0),
        };
        self.sink.emit(EngineEvent::Pass(record.clone()));
        self.seen.history.push(record);
        if !self.seen.gate.is_open() {
            // Dirty data is not trusted until every device is saving.
            if !self.deferred_noted {
                self.deferred_noted = true;
                self.sink.emit(EngineEvent::Note {
                    message: "convergence decisions wait until every VFIO device is saving".into(),
                });
            }
            self.state.since = self.seen.history.len();
            return None;
        }
        let decision = policy::decide(self.plan, &self.seen.history, &self.state, self.ctx);
        self.carry_out(decision).await
    }

    /// When the gate has just opened, only boundaries from now on count.
    fn on_gate_change(&mut self, was_open: bool) {
        if !was_open && self.seen.gate.is_open() {
            // The pass under way began before every device was saving: skip it too.
            self.state.since = self.seen.history.len() + 1;
            self.sink.emit(EngineEvent::Note {
                message: format!(
                    "every VFIO device is saving ({}ms after migrate): convergence decisions may start",
                    self.seen.gate.opened_at_ms().unwrap_or(0)
                ),
            });
        }
    }

    async fn on_deadline(&mut self) -> Option<LoopEnd> {
        let decision = policy::decide_at_deadline(self.plan, &self.seen.history, &self.state, self.ctx);
        if matches!(decision, Decision::Escalate { .. }) {
            // Forcing at the deadline gets a quarter of the deadline (at least 5 s) to finish.
            let grace = (self.plan.limits.deadline / 4).max(Duration::from_secs(5));
            self.hard_deadline = self.started.elapsed() + grace;
        }
        self.carry_out(decision).await
    }

    async fn carry_out(&mut self, decision: Decision) -> Option<LoopEnd> {
        let (step, action, reason, skipped) = match decision {
            Decision::Continue => return None,
            Decision::Abort(reason) => return Some(LoopEnd::Abort(reason)),
            Decision::Escalate {
                step,
                action,
                reason,
                skipped,
            } => (step, action, reason, skipped),
        };
        let result = match &action {
            Action::Throttle { throttle } => self
                .driver
                .throttle(throttle)
                .await
                .map(|()| self.seen.throttled = true),
            Action::RaiseDowntime { to_ms } => self.driver.set_downtime_limit(*to_ms).await.map(|()| {
                self.state.downtime_limit_ms = *to_ms;
                self.state.forced = true;
            }),
            Action::StopGuest => self.driver.stop_source().await.map(|()| {
                self.state.forced = true;
                self.seen.stopped_by_us = true;
            }),
        };
        let step_name = self
            .plan
            .policy
            .escalation
            .get(step)
            .map_or("on-deadline", |s| s.name())
            .to_string();
        let mut reason = reason;
        if let Err(e) = &result {
            reason = format!("{reason}; carrying it out failed: {e}");
        }
        let record = ActionRecord {
            pass: self.last_sync.max(self.seen.history.last().map_or(0, |r| r.pass)),
            at: self.started.elapsed(),
            step: step_name,
            reason,
            action,
            skipped,
        };
        self.sink.emit(EngineEvent::Action(record.clone()));
        self.seen.actions.push(record);
        self.state.next_step = step + 1;
        // The pass under way straddles the action; judge only passes that start after it.
        self.state.since = self.seen.history.len() + 1;
        if let Err(e) = result {
            if e.disconnected {
                return Some(LoopEnd::Failed(e.to_string()));
            }
        }
        None
    }
}

/// QEMU's spelling of a migration status, for timelines and progress.
pub(crate) fn status_name(status: &MigrationStatus) -> String {
    match status {
        MigrationStatus::None => "none".into(),
        MigrationStatus::Setup => "setup".into(),
        MigrationStatus::Active => "active".into(),
        MigrationStatus::PreSwitchover => "pre-switchover".into(),
        MigrationStatus::Device => "device".into(),
        MigrationStatus::Completed => "completed".into(),
        MigrationStatus::Failed => "failed".into(),
        MigrationStatus::Cancelling => "cancelling".into(),
        MigrationStatus::Cancelled => "cancelled".into(),
        MigrationStatus::Other(s) => s.clone(),
    }
}
