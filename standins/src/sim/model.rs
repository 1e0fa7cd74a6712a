//! The state of both simulated QEMUs and the clock that moves them: the migration
//! thread's iterations, bitmap syncs, the switchover decision, the device stage, cancel
//! and failure. Commands (what QMP would ask) live in `commands.rs`.
//!
//! [`Model::advance`] moves the model to an instant in steps of at most 10 ms, stopping
//! exactly at every instant something happens (an iteration ends, the bitmap runs dry,
//! a device's fault is due, a measurement ends), so events carry exact timestamps.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use engine::driver::{DirtyRateMode, DriverEvent, MigrationStatus, RunState, Side};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::devices::Dev;
use super::ram::Ram;
use super::{SimVm, MIB};
use crate::vfio::Fault;

/// QEMU's `BUFFER_DELAY`: the rate-limit window, and how often the migration thread
/// recomputes bandwidth and threshold.
pub(super) const ITERATION: Duration = Duration::from_millis(100);
/// Longest step the model takes without looking at the clock again.
pub(super) const MAX_STEP: Duration = Duration::from_millis(10);
/// From `migrate` to the first bitmap sync (RAM's setup step).
pub(super) const SETUP_SYNC: Duration = Duration::from_millis(2);
/// From `migrate` to `active` (the measured `setup-time` is a few ms).
pub(super) const SETUP_TIME: Duration = Duration::from_millis(5);
/// From the sync that finds the rest under the threshold (its `MIGRATION_PASS`) to the
/// VM's `STOP`: QEMU's completion takes the main lock and stops the vCPUs first (0.3–1.2
/// ms on real QEMU with an idle guest). A client that asks something on the pass event
/// has its question waiting in QEMU's monitor through the pause.
pub(super) const STOP_AFTER_LAST_SYNC: Duration = Duration::from_millis(1);
/// From `migrate_cancel` to `cancelled` (measured: ~15 ms).
pub(super) const CANCEL_TIME: Duration = Duration::from_millis(15);
/// Dirty rates and auto-converge are reconsidered at syncs at least this far apart.
pub(super) const RATE_PERIOD: Duration = Duration::from_secs(1);
/// QEMU's `throttle-trigger-threshold` default, percent.
pub(super) const THROTTLE_TRIGGER_THRESHOLD: u64 = 50;
/// QEMU's dirty limit measures each vCPU's rate over a period (1 s) before it first
/// adjusts the vCPU's sleep: a limit set now holds from one period later.
pub(super) const DIRTY_LIMIT_PERIOD: Duration = Duration::from_secs(1);
/// QEMU's default `max-bandwidth` (`MAX_THROTTLE`).
pub(super) const DEFAULT_MAX_BANDWIDTH: u64 = 128 * MIB;

/// Migration capabilities the engine touches (all off in a fresh QEMU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Caps {
    pub(super) events: bool,
    pub(super) pause_before_switchover: bool,
    pub(super) auto_converge: bool,
    pub(super) return_path: bool,
    pub(super) switchover_ack: bool,
}

/// Migration parameters the engine touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Params {
    pub(super) downtime_limit_ms: u64,
    pub(super) max_bandwidth: u64,
    pub(super) throttle_initial: u8,
    pub(super) throttle_increment: u8,
    pub(super) throttle_max: u8,
}

impl Default for Params {
    /// QEMU 10's defaults.
    fn default() -> Self {
        Params {
            downtime_limit_ms: 300,
            max_bandwidth: DEFAULT_MAX_BANDWIDTH,
            throttle_initial: 20,
            throttle_increment: 10,
            throttle_max: 99,
        }
    }
}

/// A `calc-dirty-rate` measurement.
#[derive(Debug, Clone)]
pub(super) enum Probe {
    Unstarted,
    Measuring {
        mode: DirtyRateMode,
        start: Instant,
        end: Instant,
        written_at_start: f64,
    },
    Measured {
        mode: DirtyRateMode,
        mib_per_sec: u64,
    },
}

/// A piece of the device stage: RAM, or one device's stop-copy state.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// The device (index), or `None` for RAM.
    pub(super) device: Option<usize>,
    /// Wire bytes.
    pub(super) bytes: u64,
    /// When it is done.
    pub(super) end: Instant,
}

/// Where the migration thread is.
#[derive(Debug)]
pub(super) enum Stage {
    /// `setup`, before (`synced == false`) or after the first bitmap sync.
    Setup { synced: bool },
    /// `active`: iterating.
    Active,
    /// Waiting for `migrate-continue`.
    PreSwitchover,
    /// Copying the rest with the VM stopped.
    Device {
        current: Segment,
        queue: VecDeque<(Option<usize>, u64)>,
    },
    /// `cancelling` until this instant.
    Cancelling { until: Instant },
    /// Over.
    Ended,
}

/// The source's migration.
#[derive(Debug)]
pub(super) struct Migration {
    pub(super) status: MigrationStatus,
    pub(super) stage: Stage,
    pub(super) started: Instant,
    pub(super) setup_time_ms: Option<u64>,
    /// Why the connection to the destination failed, when it did.
    pub(super) refused: Option<String>,
    pub(super) iter_start: Instant,
    pub(super) window_bytes: u64,
    /// A dry bitmap already triggered an iteration in this window.
    pub(super) dry_run_done: bool,
    /// The last sync found the rest under the threshold: the VM stops at this instant
    /// ([`STOP_AFTER_LAST_SYNC`]).
    pub(super) stopping_at: Option<Instant>,
    /// Bytes per second over the last window (`mbps`).
    pub(super) bandwidth: f64,
    pub(super) threshold: f64,
    pub(super) expected_downtime_ms: u64,
    pub(super) ram_transferred: u64,
    pub(super) vfio_transferred: u64,
    pub(super) dirty_sync_count: u64,
    pub(super) dirty_pages_rate: u64,
    pub(super) dirty_bytes_last_sync: u64,
    pub(super) period_start: Instant,
    pub(super) period_new_pages: u64,
    pub(super) period_xfer_prev: u64,
    pub(super) dirty_rate_high_cnt: u32,
    pub(super) downtime_start: Option<Instant>,
    pub(super) vm_old_live: bool,
    pub(super) downtime_ms: Option<u64>,
    pub(super) total_time_ms: Option<u64>,
    pub(super) error: Option<String>,
}

impl Migration {
    /// A migration `migrate` just started.
    pub(super) fn new(now: Instant, refused: Option<String>, downtime_limit_ms: u64) -> Self {
        Migration {
            status: MigrationStatus::Setup,
            stage: Stage::Setup { synced: false },
            started: now,
            setup_time_ms: None,
            refused,
            iter_start: now,
            window_bytes: 0,
            dry_run_done: false,
            stopping_at: None,
            bandwidth: 0.0,
            threshold: 0.0,
            expected_downtime_ms: downtime_limit_ms,
            ram_transferred: 0,
            vfio_transferred: 0,
            dirty_sync_count: 0,
            dirty_pages_rate: 0,
            dirty_bytes_last_sync: 0,
            period_start: now,
            period_new_pages: 0,
            period_xfer_prev: 0,
            dirty_rate_high_cnt: 0,
            downtime_start: None,
            vm_old_live: false,
            downtime_ms: None,
            total_time_ms: None,
            error: None,
        }
    }

    /// Whether the migration runs (QEMU's `migration_is_running`).
    pub(super) fn is_running(&self) -> bool {
        !matches!(self.stage, Stage::Ended)
    }
}

/// One thing that crossed the simulated monitors, in the order the model saw it.
#[derive(Debug, Clone)]
pub enum Exchange {
    /// A request the engine made of a side (QMP's command name).
    Request {
        /// The side asked.
        side: Side,
        /// The command.
        command: String,
    },
    /// An event the model sent the engine (the devices' own events aside).
    Event(DriverEvent),
}

/// Both simulated QEMUs.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) ram_bytes: u64,
    pub(super) dirty_rate: u64,
    pub(super) link: u64,
    pub(super) kvm: bool,
    /// KVM's dirty ring is on (it needs KVM).
    pub(super) dirty_ring: bool,
    /// How far the model has been moved.
    pub(super) now: Instant,
    pub(super) connected: bool,
    pub(super) src_run: RunState,
    pub(super) dst_run: RunState,
    /// `cont` was sent to the destination while it waited: it starts once loaded.
    pub(super) dst_autostart: bool,
    pub(super) caps: Caps,
    pub(super) params: Params,
    /// What `configure` found, for `restore`.
    pub(super) saved: Option<(Caps, Params)>,
    /// The dirty limit as set (`query-vcpu-dirty-limit`).
    pub(super) dirty_limit_mib: Option<u64>,
    /// The limit that holds the guest now, and the one set but not yet holding (from
    /// when).
    pub(super) dirty_limit_holding: Option<u64>,
    pub(super) dirty_limit_pending: Option<(u64, Instant)>,
    /// Auto-converge's throttle, percent (0: inactive).
    pub(super) throttle_pct: u8,
    pub(super) mig: Option<Migration>,
    pub(super) dst_status: MigrationStatus,
    pub(super) listening: bool,
    pub(super) ram: Ram,
    pub(super) devices: Vec<Dev>,
    pub(super) probe: Probe,
    pub(super) out: UnboundedSender<DriverEvent>,
    pub(super) paused_since: Option<Instant>,
    pub(super) paused_total: Duration,
    pub(super) lost_pages: u64,
    /// Requests and events in order, for tests of what the engine asked when.
    pub(super) exchanges: RefCell<Vec<Exchange>>,
}

/// A duration in seconds.
pub(super) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Model {
    /// Both QEMUs as started: the source runs the guest, the destination waits
    /// (`-incoming defer -S`).
    pub(super) fn new(vm: SimVm, out: UnboundedSender<DriverEvent>) -> Self {
        Model {
            ram_bytes: vm.ram_bytes,
            dirty_rate: vm.dirty_rate,
            link: vm.link_bytes_per_sec.max(1),
            kvm: vm.kvm,
            dirty_ring: vm.kvm && vm.dirty_ring,
            now: Instant::now(),
            connected: false,
            src_run: RunState::Running,
            dst_run: RunState::InMigrate,
            dst_autostart: false,
            caps: Caps::default(),
            params: Params::default(),
            saved: None,
            dirty_limit_mib: None,
            dirty_limit_holding: None,
            dirty_limit_pending: None,
            throttle_pct: 0,
            mig: None,
            dst_status: MigrationStatus::None,
            listening: false,
            ram: Ram::new(vm.ram_bytes, vm.wss_bytes),
            devices: vm.devices.into_iter().map(Dev::new).collect(),
            probe: Probe::Unstarted,
            out,
            paused_since: None,
            paused_total: Duration::ZERO,
            lost_pages: 0,
            exchanges: RefCell::new(Vec::new()),
        }
    }

    /// Sends an event to the engine (dropped when nobody listens).
    pub(super) fn emit(&self, event: DriverEvent) {
        self.exchanges.borrow_mut().push(Exchange::Event(event.clone()));
        let _ = self.out.send(event);
    }

    /// A `MIGRATION` event, when the `events` capability is on.
    pub(super) fn emit_status(&self, status: MigrationStatus) {
        if self.caps.events {
            self.emit(DriverEvent::Migration { status, at: self.now });
        }
    }

    /// The source's migration status (`none` before any migration).
    pub(super) fn status(&self) -> MigrationStatus {
        self.mig
            .as_ref()
            .map_or(MigrationStatus::None, |m| m.status.clone())
    }

    pub(super) fn set_status(&mut self, status: MigrationStatus) {
        if let Some(m) = &mut self.mig {
            m.status = status.clone();
        }
        self.emit_status(status);
    }

    /// How long the guest has been paused, all told (source `STOP` to the next `RESUME`
    /// on either side).
    pub(super) fn paused_total(&self) -> Duration {
        self.paused_total
            + self
                .paused_since
                .map_or(Duration::ZERO, |since| self.now.saturating_duration_since(since))
    }

    /// The rate the guest dirties its working set now: auto-converge's throttle slows the
    /// vCPU, a dirty limit caps it.
    pub(super) fn guest_rate(&self) -> f64 {
        let mut rate = self.dirty_rate as f64 * (1.0 - f64::from(self.throttle_pct) / 100.0);
        if let Some(limit) = self.dirty_limit_holding {
            rate = rate.min((limit * MIB) as f64);
        }
        rate
    }

    /// The migration's sending rate: `max-bandwidth` (0: none) and the link.
    pub(super) fn send_rate(&self) -> f64 {
        match self.params.max_bandwidth {
            0 => self.link as f64,
            cap => cap.min(self.link) as f64,
        }
    }

    // ---- the clock -------------------------------------------------------------------

    /// Moves the model to `target`.
    pub(super) fn advance(&mut self, target: Instant) {
        self.fire_due();
        while self.now < target {
            let mut end = target.min(self.now + MAX_STEP);
            if let Some(next) = self.next_milestone() {
                end = end.min(next.max(self.now + Duration::from_micros(1)));
            }
            self.flow(end);
            self.now = end;
            self.fire_due();
        }
    }

    /// The next instant something happens on its own, if anything will.
    pub(super) fn next_milestone(&self) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        if let Probe::Measuring { end, .. } = &self.probe {
            times.push(*end);
        }
        if let Some((_, from)) = self.dirty_limit_pending {
            times.push(from);
        }
        if let Some(m) = &self.mig {
            match &m.stage {
                Stage::Setup { synced: false } => times.push(m.started + SETUP_SYNC),
                Stage::Setup { synced: true } => times.push(m.started + SETUP_TIME),
                Stage::Active => {
                    times.push(m.iter_start + ITERATION);
                    times.extend(m.stopping_at);
                    let rate = self.send_rate();
                    if !self.ram.is_empty() && rate > 0.0 {
                        let left = self.ram.wire_to_empty().max(0.0) / rate;
                        times.push(self.now + Duration::from_secs_f64(left) + Duration::from_micros(1));
                    }
                }
                Stage::Device { current, .. } => times.push(current.end),
                Stage::Cancelling { until } => times.push(*until),
                Stage::PreSwitchover | Stage::Ended => {}
            }
            if matches!(
                m.stage,
                Stage::Active | Stage::PreSwitchover | Stage::Device { .. }
            ) {
                let faults = self.devices.iter().filter(|d| !d.fault_done);
                times.extend(
                    faults
                        .filter_map(|d| fault_due(&d.cfg.fault))
                        .map(|due| m.started + due),
                );
            }
        }
        times.into_iter().min()
    }

    /// Time passes from `self.now` to `end` with nothing scheduled in between: the guest
    /// writes while it runs, and the migration sends while it is active.
    fn flow(&mut self, end: Instant) {
        let dt = secs(end.saturating_duration_since(self.now));
        if self.src_run == RunState::Running {
            let rate = self.guest_rate();
            self.ram.write(rate * dt);
        }
        let rate = self.send_rate();
        if let Some(m) = &mut self.mig {
            if matches!(m.stage, Stage::Active) {
                if self.ram.is_empty() {
                    self.ram.idle();
                } else {
                    let sent = self.ram.send(rate * dt);
                    m.ram_transferred += sent;
                    m.window_bytes += sent;
                }
            }
        }
    }

    /// Handles everything due at `self.now`.
    fn fire_due(&mut self) {
        // Each step changes what is due, so this ends; the bound is a safety net.
        for _ in 0..10_000 {
            if !self.fire_one() {
                return;
            }
        }
    }

    fn fire_one(&mut self) -> bool {
        let now = self.now;
        if let Some((limit, from)) = self.dirty_limit_pending {
            if from <= now {
                self.dirty_limit_holding = Some(limit);
                self.dirty_limit_pending = None;
                return true;
            }
        }
        if let Probe::Measuring { end, .. } = &self.probe {
            if *end <= now {
                self.finish_probe();
                return true;
            }
        }
        let Some(m) = &self.mig else {
            return false;
        };
        let started = m.started;
        if let (Stage::Active, Some(at)) = (&m.stage, m.stopping_at) {
            if at <= now {
                if let Some(m) = &mut self.mig {
                    m.stopping_at = None;
                }
                self.begin_completion();
                return true;
            }
        }
        match &m.stage {
            Stage::Setup { synced: false } if now >= started + SETUP_SYNC => {
                self.setup_sync();
                return true;
            }
            Stage::Setup { synced: true } if now >= started + SETUP_TIME => {
                self.setup_done();
                return true;
            }
            Stage::Active if now >= m.iter_start + ITERATION => {
                self.iteration_end();
                return true;
            }
            Stage::Active if self.ram.is_empty() && !m.dry_run_done => {
                // The pass ran dry: the migration thread iterates again at once.
                if let Some(m) = &mut self.mig {
                    m.dry_run_done = true;
                }
                self.iteration_run();
                return true;
            }
            Stage::Device { current, .. } if current.end <= now => {
                self.segment_done();
                return true;
            }
            Stage::Cancelling { until } if *until <= now => {
                self.finish_cancel();
                return true;
            }
            _ => {}
        }
        if matches!(
            m.stage,
            Stage::Active | Stage::PreSwitchover | Stage::Device { .. }
        ) {
            let due = self.devices.iter().position(|d| {
                !d.fault_done && fault_due(&d.cfg.fault).is_some_and(|due| started + due <= now)
            });
            if let Some(i) = due {
                self.devices[i].fault_done = true;
                self.fault(i);
                return true;
            }
        }
        false
    }
}

/// When a fault's timer goes off, counted from `migrate` (never during setup).
fn fault_due(fault: &Fault) -> Option<Duration> {
    match fault {
        Fault::SlowToSaving(d) if *d > SETUP_TIME => Some(*d),
        Fault::ErrorInPrecopy { after } | Fault::UnplugDuringMigration { after } => {
            Some((*after).max(SETUP_TIME + Duration::from_micros(1)))
        }
        _ => None,
    }
}
