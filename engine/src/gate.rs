//! The saving gate: no convergence decision is made on dirty data until every VFIO
//! device is saving.
//!
//! QEMU starts dirty tracking in RAM's setup step, before the VFIO setup step moves the
//! devices to pre-copy; until every device is saving, what the dirty log says about
//! device DMA cannot be trusted (a device may itself be the dirty-page provider). So:
//!
//! - a device that supports pre-copy must reach `pre-copy` (or `pre-copy-p2p`);
//! - a device without pre-copy has no saving state while the VM runs: it counts once the
//!   migration is past setup and it is still `running`; when the VM stops for switchover
//!   it must be in `stop` (QEMU moves it to `stop-copy` after `migrate-continue`), while a
//!   pre-copy device must be in `stop-copy`;
//! - a device that falls back to `running` after leaving it (an error or a reset), or
//!   that is unplugged (its DMA since the last sync is then unknown), stops the
//!   migration; so does one that is not saving within `limits.saving_timeout`.

use std::time::Duration;

use plans::DeviceStateTransfer;
use serde::Serialize;
use tokio::time::Instant;

use crate::driver::DeviceState;

/// One state change of one device, for the report's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    /// The new state.
    pub state: String,
    /// Time since `migrate`, ms (negative values cannot happen: events before the
    /// migration started are recorded at 0).
    pub at_ms: u64,
    /// The source's migration status when it arrived.
    pub migration_status: String,
}

/// A device as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// Plan id.
    pub id: String,
    /// QOM path.
    pub qom_path: String,
    /// Declared pre-copy support.
    pub precopy: bool,
    /// Which channel carried its state (`x-migration-multifd-transfer` and the stream's
    /// settings); `null` when unknown.
    pub state_transfer: Option<DeviceStateTransfer>,
    /// Last state seen.
    pub state: String,
    /// When it reached its saving state, ms since `migrate`.
    pub saving_at_ms: Option<u64>,
    /// Every state change seen.
    pub timeline: Vec<StateChange>,
}

/// Why the gate stopped the migration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateViolation {
    /// A device did not reach its saving state in time.
    NotSaving {
        /// The device.
        device: String,
        /// Its last state (`running` when no event ever came).
        last_state: String,
        /// When that state was seen, ms since `migrate`; `None` when never.
        seen_at_ms: Option<u64>,
        /// The timeout, ms.
        timeout_ms: u64,
    },
    /// A device went to a state it must not be in at this point.
    UnexpectedState {
        /// The device.
        device: String,
        /// The state.
        state: String,
        /// When, ms since `migrate`.
        at_ms: u64,
    },
    /// A device was unplugged while dirty tracking ran.
    Unplugged {
        /// The device.
        device: String,
        /// When, ms since `migrate`.
        at_ms: u64,
    },
    /// At switchover a device was not in stop-copy.
    NotStopCopyAtSwitchover {
        /// The device.
        device: String,
        /// Its state then.
        state: String,
    },
}

#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    qom_path: String,
    precopy: bool,
    state_transfer: Option<DeviceStateTransfer>,
    state: DeviceState,
    seen_at: Option<Instant>,
    saving_at: Option<Instant>,
    left_running: bool,
    timeline: Vec<StateChange>,
}

/// Follows every listed device through the migration.
#[derive(Debug, Clone)]
pub struct DeviceGate {
    devices: Vec<Tracked>,
    started: Instant,
    timeout: Duration,
    opened_at: Option<Instant>,
    past_setup: bool,
}

/// A device to follow: plan id, QOM path, pre-copy support, and for the report the
/// channel its state takes.
#[derive(Debug, Clone)]
pub struct Follow {
    /// Plan id.
    pub id: String,
    /// QOM path on the source.
    pub qom_path: String,
    /// Declared pre-copy support.
    pub precopy: bool,
    /// The channel its state takes, when known.
    pub state_transfer: Option<DeviceStateTransfer>,
}

fn saving(precopy: bool, state: &DeviceState, past_setup: bool) -> bool {
    match state {
        DeviceState::PreCopy | DeviceState::PreCopyP2p => precopy,
        // QEMU moves devices to stop-copy when it stops the VM for switchover; the
        // VFIO_MIGRATION events for that come before the STOP event, so stop-copy is
        // taken as saving whenever it arrives.
        DeviceState::StopCopy => true,
        DeviceState::Running => !precopy && past_setup,
        _ => false,
    }
}

impl DeviceGate {
    /// A gate for `devices`, timed from `started` (when `migrate` was sent).
    pub fn new(devices: Vec<Follow>, started: Instant, timeout: Duration) -> Self {
        // With no devices to wait for, the gate is open from the start.
        let opened_at = devices.is_empty().then_some(started);
        DeviceGate {
            devices: devices
                .into_iter()
                .map(|f| Tracked {
                    id: f.id,
                    qom_path: f.qom_path,
                    precopy: f.precopy,
                    state_transfer: f.state_transfer,
                    state: DeviceState::Running,
                    seen_at: None,
                    saving_at: None,
                    left_running: false,
                    timeline: Vec::new(),
                })
                .collect(),
            started,
            timeout,
            opened_at,
            past_setup: false,
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    fn find(&mut self, id: &str, qom_path: &str) -> Option<usize> {
        self.devices
            .iter()
            .position(|d| (!qom_path.is_empty() && d.qom_path == qom_path) || (!id.is_empty() && d.id == id))
    }

    /// Whether every device is saving: dirty-based decisions may be made.
    pub fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }

    /// When the gate opened, ms since `migrate`.
    pub fn opened_at_ms(&self) -> Option<u64> {
        self.opened_at.map(|at| self.ms(at))
    }

    fn update_open(&mut self, at: Instant) {
        if self.opened_at.is_none() && self.devices.iter().all(|d| d.saving_at.is_some()) {
            self.opened_at = Some(at);
        }
    }

    /// The migration is past setup (status active): stop-copy-only devices that still
    /// run now count as saving.
    pub fn on_active(&mut self, at: Instant) {
        self.past_setup = true;
        for d in &mut self.devices {
            if d.saving_at.is_none() && saving(d.precopy, &d.state, true) {
                d.saving_at = Some(at);
            }
        }
        self.update_open(at);
    }

    /// A `VFIO_MIGRATION` event from the source while the VM runs. Devices the plan
    /// does not follow are ignored here (preflight refuses unlisted ones).
    pub fn on_state(
        &mut self,
        id: &str,
        qom_path: &str,
        state: DeviceState,
        at: Instant,
        migration_status: &str,
    ) -> Result<(), GateViolation> {
        let at_ms = self.ms(at);
        let past_setup = self.past_setup;
        let Some(i) = self.track(id, qom_path, &state, at, migration_status) else {
            return Ok(());
        };
        let d = &mut self.devices[i];
        let unexpected = match &state {
            // Back to running after leaving it: the device left the migration (an
            // error, a reset, or QEMU giving up on it).
            DeviceState::Running => d.left_running,
            // A source device never loads state.
            DeviceState::Resuming => true,
            _ => false,
        };
        if state != DeviceState::Running {
            d.left_running = true;
        }
        if unexpected {
            return Err(GateViolation::UnexpectedState {
                device: d.id.clone(),
                state: state.name().to_string(),
                at_ms,
            });
        }
        if d.saving_at.is_none() && saving(d.precopy, &state, past_setup) {
            d.saving_at = Some(at);
        }
        self.update_open(at);
        Ok(())
    }

    /// A `DEVICE_DELETED` on the source.
    pub fn on_deleted(&mut self, id: Option<&str>, qom_path: &str, at: Instant) -> Result<(), GateViolation> {
        match self.find(id.unwrap_or_default(), qom_path) {
            Some(i) => Err(GateViolation::Unplugged {
                device: self.devices[i].id.clone(),
                at_ms: self.ms(at),
            }),
            None => Ok(()),
        }
    }

    /// Checks the saving timeout at `now`.
    pub fn check_timeout(&self, now: Instant) -> Result<(), GateViolation> {
        if self.is_open() || now.saturating_duration_since(self.started) < self.timeout {
            return Ok(());
        }
        let late = self.devices.iter().find(|d| d.saving_at.is_none());
        match late {
            Some(d) => Err(GateViolation::NotSaving {
                device: d.id.clone(),
                last_state: d.state.name().to_string(),
                seen_at_ms: d.seen_at.map(|at| self.ms(at)),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
            None => Ok(()),
        }
    }

    /// At `pre-switchover` (VM stopped): a pre-copy device must be in stop-copy; a
    /// device without pre-copy in stop (QEMU moves it to stop-copy only after
    /// `migrate-continue`, in the `device` stage) or already in stop-copy.
    pub fn check_switchover(&self) -> Result<(), GateViolation> {
        let ready = |d: &Tracked| match d.state {
            DeviceState::StopCopy => true,
            DeviceState::Stop => !d.precopy,
            _ => false,
        };
        match self.devices.iter().find(|d| !ready(d)) {
            Some(d) => Err(GateViolation::NotStopCopyAtSwitchover {
                device: d.id.clone(),
                state: d.state.name().to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Records a state change seen after the gate's work is done (switchover, end), so
    /// the timeline is complete.
    pub fn record(
        &mut self,
        id: &str,
        qom_path: &str,
        state: DeviceState,
        at: Instant,
        migration_status: &str,
    ) {
        self.track(id, qom_path, &state, at, migration_status);
    }

    /// Adds a state change to a followed device's timeline; its index, when followed.
    fn track(
        &mut self,
        id: &str,
        qom_path: &str,
        state: &DeviceState,
        at: Instant,
        migration_status: &str,
    ) -> Option<usize> {
        let at_ms = self.ms(at);
        let i = self.find(id, qom_path)?;
        let d = &mut self.devices[i];
        d.timeline.push(StateChange {
            state: state.name().to_string(),
            at_ms,
            migration_status: migration_status.to_string(),
        });
        d.state = state.clone();
        d.seen_at = Some(at);
        Some(i)
    }

    /// The devices for the report.
    pub fn report(&self) -> Vec<DeviceReport> {
        self.devices
            .iter()
            .map(|d| DeviceReport {
                id: d.id.clone(),
                qom_path: d.qom_path.clone(),
                precopy: d.precopy,
                state_transfer: d.state_transfer,
                state: d.state.name().to_string(),
                saving_at_ms: d.saving_at.map(|at| self.ms(at)),
                timeline: d.timeline.clone(),
            })
            .collect()
    }
}
