//! What the phases of one run share: the plan, the driver, the event streams in and out,
//! the phase clock, and what has been observed so far for the report.
//!
//! Each phase module (`converge`, `verify`, `recover`) takes a [`Run`] and imports
//! nothing from the others; `run.rs` calls them in order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use plans::Plan;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::driver::{Capabilities, Driver, DriverEvent, MigrationStatus, Sample, Side};
use crate::events::{EngineEvent, EventSink};
use crate::gate::DeviceGate;
use crate::phase::{Phase, PhaseClock};
use crate::policy::PassRecord;
use crate::report::ActionRecord;
use crate::samples::Samples;

/// A driver call's future, as `async_trait` returns it.
pub(crate) type BoxFuture<'s, T> = Pin<Box<dyn Future<Output = T> + Send + 's>>;

/// How long to wait for a cancel to take effect, or for completion after switchover.
pub(crate) const SETTLE: Duration = Duration::from_secs(15);

/// One run in progress.
pub(crate) struct Run<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) driver: &'a mut dyn Driver,
    pub(crate) sink: &'a mut dyn EventSink,
    events: mpsc::UnboundedReceiver<DriverEvent>,
    /// Events read while waiting for something else (see `converge.rs`), not yet
    /// handled: whoever reads events next takes these first, in order.
    pub(crate) early: VecDeque<DriverEvent>,
    pub(crate) clock: PhaseClock,
    pub(crate) seen: Observed,
    pub(crate) capabilities: Option<Capabilities>,
    /// Every note the run made, in order, for the report.
    pub(crate) notes: Vec<String>,
}

impl<'a> Run<'a> {
    /// A run that has just connected; `clock` is in the connect phase.
    pub(crate) fn new(
        plan: &'a Plan,
        driver: &'a mut dyn Driver,
        sink: &'a mut dyn EventSink,
        clock: PhaseClock,
    ) -> Self {
        let events = driver.take_events();
        Run {
            plan,
            driver,
            sink,
            events,
            early: VecDeque::new(),
            clock,
            seen: Observed::new(plan),
            capabilities: None,
            notes: Vec::new(),
        }
    }

    /// The next event, waiting for it; `None` once both sides' streams have ended.
    pub(crate) async fn next_event(&mut self) -> Option<DriverEvent> {
        match self.early.pop_front() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// The next event if one is there.
    pub(crate) fn try_next_event(&mut self) -> Option<DriverEvent> {
        self.early.pop_front().or_else(|| self.events.try_recv().ok())
    }

    /// Runs `work` on the driver unless QEMU announces `pre-switchover` first (then
    /// `Err` with the event and the instant it arrived). The guest is stopped from that
    /// moment and waits for this run, so `work` is given up (a command's late reply is
    /// discarded). Other events that arrive meanwhile are kept for the next reader.
    pub(crate) async fn unless_held<'s, T>(
        &'s mut self,
        work: impl FnOnce(&'s mut dyn Driver) -> BoxFuture<'s, T>,
    ) -> Result<T, (DriverEvent, Instant)> {
        let Run {
            driver,
            events,
            early,
            ..
        } = self;
        let mut work = work(&mut **driver);
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                event = events.recv(), if open => match event {
                    Some(
                        event @ DriverEvent::Migration {
                            status: MigrationStatus::PreSwitchover,
                            at,
                        },
                    ) => return Err((event, at)),
                    Some(event) => early.push_back(event),
                    None => open = false,
                },
                done = &mut work => return Ok(done),
            }
        }
    }

    /// Ends the current phase and announces `phase`.
    pub(crate) fn enter(&mut self, phase: Phase) {
        self.clock.enter(phase);
        self.sink.emit(EngineEvent::Phase { phase });
    }

    /// Tells the operator something that changes nothing by itself.
    pub(crate) fn note(&mut self, message: impl Into<String>) {
        let message = message.into();
        self.notes.push(message.clone());
        self.sink.emit(EngineEvent::Note { message });
    }

    /// The guest-visible pause ends with a RESUME, which trails `cont`'s reply: waits up
    /// to a second for it when the guest was stopped.
    pub(crate) async fn await_resume(&mut self) {
        let until = Instant::now() + Duration::from_secs(1);
        while self.seen.source_stopped_at.is_some() && self.seen.resumed_at.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.next_event()).await {
                Ok(Some(event)) => self.record_late(&event, MigrationStatus::Completed),
                _ => break,
            }
        }
    }

    /// Takes in the events queued by now, as [`Run::record_late`] does, under the
    /// migration status last read. The run's end calls it before the report, so that
    /// transitions nobody was waiting for (devices back to `running` after a cancel, a
    /// late `stop`) reach the stream and the report like any other.
    pub(crate) fn take_in_queued(&mut self) {
        let status = self
            .seen
            .last_sample
            .as_ref()
            .map_or(MigrationStatus::None, |s| s.status.clone());
        while let Some(event) = self.try_next_event() {
            self.record_late(&event, status.clone());
        }
    }

    /// Records device and pause events that arrive after the convergence loop; every
    /// device transition among them goes to the sink too.
    pub(crate) fn record_late(&mut self, event: &DriverEvent, status: MigrationStatus) {
        self.seen.record(event);
        if let DriverEvent::DeviceState {
            side: Side::Source,
            id,
            qom_path,
            state,
            at,
        } = event
        {
            self.seen
                .gate
                .record(id, qom_path, state.clone(), *at, status.as_str());
            self.sink.emit(EngineEvent::Device {
                id: display_id(id, qom_path),
                state: state.name().to_string(),
                at_ms: self.seen.ms_since_start(*at),
            });
        }
    }
}

/// A device's id for people: QEMU's id, or the last part of its QOM path.
pub(crate) fn display_id(id: &str, qom_path: &str) -> String {
    match id.is_empty() {
        true => qom_path.rsplit('/').next().unwrap_or_default().to_string(),
        false => id.to_string(),
    }
}

/// What the run observed, gathered for the report.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) history: Vec<PassRecord>,
    /// The statistics of every tick (thinned on long runs).
    pub(crate) samples: Samples,
    pub(crate) actions: Vec<ActionRecord>,
    pub(crate) last_sample: Option<Sample>,
    /// The highest throughput any sample showed, bytes/s: what the link carried while
    /// there was data to send. An idle guest leaves little to send near the end, and
    /// QEMU's throughput then says more about the guest than about the link.
    pub(crate) peak_bandwidth: u64,
    pub(crate) source_stopped_at: Option<Instant>,
    pub(crate) resumed_at: Option<(Side, Instant)>,
    pub(crate) throttled: bool,
    pub(crate) stopped_by_us: bool,
    pub(crate) switchover_latency: Option<Duration>,
    /// From the `pre-switchover` event to the `migrate-continue` reply.
    pub(crate) switchover_reply: Option<Duration>,
    pub(crate) gate: DeviceGate,
    /// The downtime limit in force, ms.
    pub(crate) downtime_limit_ms: u64,
    /// When `migrate` was sent.
    pub(crate) started: Option<Instant>,
    /// The destination said its incoming migration completed (its own event).
    pub(crate) destination_loaded: bool,
}

impl Observed {
    fn new(plan: &Plan) -> Self {
        Self::default_for(plan.limits.downtime.as_millis() as u64)
    }

    /// Nothing observed yet, with `downtime_limit_ms` in force.
    pub(crate) fn default_for(downtime_limit_ms: u64) -> Self {
        Observed {
            history: Vec::new(),
            samples: Samples::default(),
            actions: Vec::new(),
            last_sample: None,
            peak_bandwidth: 0,
            source_stopped_at: None,
            resumed_at: None,
            throttled: false,
            stopped_by_us: false,
            switchover_latency: None,
            switchover_reply: None,
            gate: DeviceGate::new(Vec::new(), Instant::now(), Duration::ZERO),
            downtime_limit_ms,
            started: None,
            destination_loaded: false,
        }
    }

    /// Notes what an event says about pauses. Device states are the gate's business
    /// while the convergence loop runs; afterwards see [`Run::record_late`].
    pub(crate) fn record(&mut self, event: &DriverEvent) {
        match event {
            DriverEvent::Stop {
                side: Side::Source,
                at,
            } => self.source_stopped_at = Some(*at),
            DriverEvent::Resume { side, at } if self.source_stopped_at.is_some() => {
                self.resumed_at.get_or_insert((*side, *at));
            }
            DriverEvent::DestinationMigration {
                status: MigrationStatus::Completed,
                ..
            } => self.destination_loaded = true,
            _ => {}
        }
    }

    /// Milliseconds from `migrate` to `at` (0 before it was sent).
    pub(crate) fn ms_since_start(&self, at: Instant) -> u64 {
        self.started
            .map_or(0, |s| at.saturating_duration_since(s).as_millis() as u64)
    }

    /// The guest-visible pause: STOP on the source to the first RESUME after it.
    pub(crate) fn paused_ms(&self) -> Option<u64> {
        let stop = self.source_stopped_at?;
        let (_, resume) = self.resumed_at?;
        Some(resume.saturating_duration_since(stop).as_millis() as u64)
    }
}
