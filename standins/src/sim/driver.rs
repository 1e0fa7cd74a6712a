//! [`SimDriver`], the simulated pair behind the engine's [`Driver`] trait, and
//! [`SimInspector`], a read-only view for tests and the demo.
//!
//! The model moves when a request arrives (to the request's instant) and, between
//! requests, from a task that wakes at the next instant something happens (at least
//! every 10 ms of tokio time), so events reach the engine when they happen.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use engine::driver::{
    DeviceEvents, DeviceInfo, DeviceState, DirtyRate, DirtyRateMode, Driver, DriverError, DriverEvent,
    KernelDirtyRate, Listen, MigrationStatus, PairFacts, RunState, Sample, Setup, Side, SwitchoverHold,
    Throttle,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::commands::Refusal;
use super::model::{Exchange, Model};
use super::SimVm;

/// Longest the background task sleeps between model steps.
const TICK: Duration = Duration::from_millis(10);

/// A simulated source and destination QEMU, driven like the QMP backend.
pub struct SimDriver {
    model: Arc<Mutex<Model>>,
    events: Option<mpsc::UnboundedReceiver<DriverEvent>>,
    ticker: Option<JoinHandle<()>>,
}

/// A cheap, cloneable view of a [`SimDriver`]'s hypervisors, for checking final states.
#[derive(Clone)]
pub struct SimInspector {
    model: Arc<Mutex<Model>>,
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A refusal as the QMP backend reports QEMU's error replies.
fn refused(side: Side, r: Refusal) -> DriverError {
    DriverError {
        side,
        request: r.command.to_string(),
        message: format!("{side} (sim): {}: {}: {}", r.command, r.class, r.desc),
        disconnected: false,
    }
}

impl SimDriver {
    /// Both QEMUs as started: the source runs `vm`, the destination waits for it
    /// (`-incoming defer -S`). Nothing moves until [`Driver::connect`].
    pub fn new(vm: SimVm) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        SimDriver {
            model: Arc::new(Mutex::new(Model::new(vm, tx))),
            events: Some(rx),
            ticker: None,
        }
    }

    /// A view that outlives the driver, for reading final states.
    pub fn inspector(&self) -> SimInspector {
        SimInspector {
            model: Arc::clone(&self.model),
        }
    }

    /// Runs `f` on the model moved to now; `request` names the command for errors.
    fn call<T>(
        &self,
        side: Side,
        request: &str,
        f: impl FnOnce(&mut Model) -> Result<T, Refusal>,
    ) -> Result<T, DriverError> {
        let mut m = lock(&self.model);
        if !m.connected {
            return Err(DriverError::not_connected(side, request));
        }
        m.advance(Instant::now());
        m.exchanges.borrow_mut().push(Exchange::Request {
            side,
            command: request.to_string(),
        });
        f(&mut m).map_err(|r| refused(side, r))
    }
}

impl Drop for SimDriver {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

/// Moves the model between requests: to now, then sleeps until the next thing it
/// has scheduled (at most [`TICK`]).
async fn tick(model: Weak<Mutex<Model>>) {
    loop {
        let wake = {
            let Some(model) = model.upgrade() else {
                return;
            };
            let mut m = lock(&model);
            let now = Instant::now();
            m.advance(now);
            let next = m.next_milestone().map_or(now + TICK, |t| t.min(now + TICK));
            next.max(now + Duration::from_micros(100))
        };
        tokio::time::sleep_until(wake).await;
    }
}

#[async_trait]
impl Driver for SimDriver {
    async fn connect(&mut self) -> Result<(), DriverError> {
        {
            let mut m = lock(&self.model);
            if !m.connected {
                m.connected = true;
                m.now = Instant::now();
            }
        }
        if self.ticker.is_none() {
            self.ticker = Some(tokio::spawn(tick(Arc::downgrade(&self.model))));
        }
        Ok(())
    }

    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent> {
        self.events.take().unwrap_or_else(|| mpsc::unbounded_channel().1)
    }

    async fn inspect(&mut self) -> Result<PairFacts, DriverError> {
        self.call(Side::Source, "query-status", |m| {
            Ok(PairFacts {
                source: m.facts(Side::Source),
                destination: m.facts(Side::Destination),
            })
        })
    }

    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-set-capabilities", |m| m.configure(setup))
    }

    async fn start(&mut self, uri: &str) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate", |m| m.start(uri))
    }

    async fn sample(&mut self) -> Result<Sample, DriverError> {
        self.call(Side::Source, "query-migrate", |m| Ok(m.sample()))
    }

    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-set-parameters", |m| {
            m.set_downtime_limit(ms)
        })
    }

    async fn set_max_bandwidth(&mut self, bytes_per_sec: u64) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-set-parameters", |m| {
            m.set_max_bandwidth(bytes_per_sec)
        })
    }

    async fn throttle(&mut self, throttle: &Throttle) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-set-parameters", |m| m.throttle(throttle))
    }

    async fn release_throttle(&mut self) -> Result<(), DriverError> {
        self.call(Side::Source, "cancel-vcpu-dirty-limit", |m| m.release_throttle())
    }

    async fn stop_source(&mut self) -> Result<(), DriverError> {
        self.call(Side::Source, "stop", |m| m.stop_source())
    }

    async fn cancel(&mut self) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate_cancel", |m| {
            m.cancel();
            Ok(())
        })
    }

    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError> {
        match self.call(side, "query-status", |m| Ok(m.run_state(side))) {
            Err(e) if e.disconnected => Ok(RunState::Gone),
            other => other,
        }
    }

    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError> {
        self.call(Side::Destination, "query-migrate", |m| Ok(m.dst_status.clone()))
    }

    async fn resume(&mut self, side: Side) -> Result<(), DriverError> {
        self.call(side, "cont", |m| m.resume(side))
    }

    async fn restore(&mut self) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-set-parameters", |m| m.restore())
    }

    engine::capabilities!(switchover_hold, device_events, kernel_dirty_rate, listener);
}

#[async_trait]
impl SwitchoverHold for SimDriver {
    async fn continue_switchover(&mut self) -> Result<(), DriverError> {
        self.call(Side::Source, "migrate-continue", |m| m.continue_switchover())
    }
}

#[async_trait]
impl DeviceEvents for SimDriver {
    async fn vfio_devices(&mut self) -> Result<Vec<DeviceInfo>, DriverError> {
        self.call(Side::Source, "qom-list", |m| Ok(m.vfio_devices()))
    }

    async fn enable_migration_events(&mut self, qom_path: &str) -> Result<(), DriverError> {
        self.call(Side::Source, "qom-set", |m| m.enable_migration_events(qom_path))
    }
}

#[async_trait]
impl KernelDirtyRate for SimDriver {
    async fn start_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Result<(), DriverError> {
        self.call(Side::Source, "calc-dirty-rate", |m| m.calc_dirty_rate(mode, calc))
    }

    async fn dirty_rate(&mut self) -> Result<Option<DirtyRate>, DriverError> {
        self.call(Side::Source, "query-dirty-rate", |m| Ok(m.query_dirty_rate()))
    }
}

#[async_trait]
impl Listen for SimDriver {
    async fn listen(&mut self, uri: &str) -> Result<(), DriverError> {
        self.call(Side::Destination, "migrate-incoming", |m| m.listen(uri))
    }
}

impl SimInspector {
    /// Reads the model, moved to now.
    fn read<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        let mut m = lock(&self.model);
        if m.connected {
            m.advance(Instant::now());
        }
        f(&m)
    }

    /// A side's run state (`query-status`).
    pub fn run_state(&self, side: Side) -> RunState {
        self.read(|m| m.run_state(side))
    }

    /// The source's migration status.
    pub fn migration_status(&self) -> MigrationStatus {
        self.read(|m| m.status())
    }

    /// The destination's (incoming) migration status.
    pub fn destination_migration_status(&self) -> MigrationStatus {
        self.read(|m| m.dst_status.clone())
    }

    /// Working-set pages the destination holds an old version of after a completed
    /// migration: 0 unless the model has a bug (0 before completion too).
    pub fn guest_pages_lost(&self) -> u64 {
        self.read(|m| m.lost_pages)
    }

    /// How long the guest was paused, all told: from the source's `STOP` to the next
    /// `RESUME` on either side (to now while it is still paused).
    pub fn paused_total(&self) -> Duration {
        self.read(|m| m.paused_total())
    }

    /// The source's `dirty-sync-count`.
    pub fn dirty_sync_count(&self) -> u64 {
        self.read(|m| m.sample().dirty_sync_count)
    }

    /// Auto-converge's current throttle, percent (0 when inactive).
    pub fn throttle_percentage(&self) -> u8 {
        self.read(|m| m.throttle_pct)
    }

    /// The vCPU dirty limit in force, MiB/s.
    pub fn dirty_limit(&self) -> Option<u64> {
        self.read(|m| m.dirty_limit_mib)
    }

    /// The rate the guest dirties memory now, after throttling, bytes/s.
    pub fn guest_dirty_rate(&self) -> u64 {
        self.read(|m| m.guest_rate() as u64)
    }

    /// Every request the engine made and every event the model sent it (the devices'
    /// own events aside), in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.read(|m| m.exchanges.borrow().clone())
    }

    /// The current `downtime-limit`, ms.
    pub fn downtime_limit_ms(&self) -> u64 {
        self.read(|m| m.params.downtime_limit_ms)
    }

    /// A device's migration state on a side, `None` for an unknown or unplugged device.
    pub fn device_state(&self, side: Side, id: &str) -> Option<DeviceState> {
        self.read(|m| {
            m.devices
                .iter()
                .find(|d| d.present && d.cfg.id == id)
                .map(|d| match side {
                    Side::Source => d.state.current().clone(),
                    Side::Destination => d.dst_state.current().clone(),
                })
        })
    }
}
