//! When the modelled devices move, decided from what QEMU really does: its `MIGRATION`,
//! `STOP` and `RESUME` events (or polled statuses), the client's commands, and the
//! model's own timers. Which state a device moves to is [`crate::vfio`]'s rule; this
//! module maps QEMU's events onto its steps:
//! - `MIGRATION setup` → [`Step::SaveSetup`]; `device` → [`Step::SaveComplete`];
//!   `completed` → [`Step::SaveComplete`] (if `device` was not seen) then
//!   [`Step::SaveCleanup`]; `failed`/`cancelled` → [`Step::PrecopyFailed`], unless the VM
//!   was stopped by the migration: QEMU restarts it first, and `RESUME` does it.
//! - `STOP` / `RESUME` → [`run_state_change`], its events placed before `STOP` (QEMU runs
//!   the callbacks first) and after `RESUME` (`vm_prepare_start` emits it first).
//! - Destination `MIGRATION active` (loading begins) → [`Step::LoadSetup`].

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use super::config::{ProxyConfig, Role};
use super::rewrite::{event_line, status_of};
use crate::vfio::{run_state_change, Fault, ModelDevice, StateMachine, Step};

/// An event line for the clients.
#[derive(Debug, Clone)]
pub(crate) struct Injection {
    /// The serialised event, `\r\n`-terminated.
    pub(crate) line: String,
    /// Whether it goes before the QEMU event being handled (device callbacks QEMU runs
    /// before it emits `STOP`) rather than after it.
    pub(crate) before: bool,
}

/// Something the proxy must do on the model's behalf.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Call [`Model::on_timer`] with this timer after the delay.
    Timer(Duration, Timer),
    /// Send this command (name, arguments) to QEMU for the proxy itself, ignoring the reply.
    Upstream(&'static str, Value),
}

/// A delayed model step; stale ones (from an earlier migration) do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// A slow device finally enters pre-copy.
    Saving { epoch: u64, device: usize },
    /// A device fails while saving.
    Error { epoch: u64, device: usize },
    /// A device disappears.
    Unplug { epoch: u64, device: usize },
    /// Stop-copy has drained: pass `migrate-continue` on to QEMU.
    Release { epoch: u64 },
}

/// How a client should see one of QEMU's `MIGRATION` events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventView {
    /// Unchanged.
    Keep,
    /// Not at all.
    Drop,
    /// With this `data` instead.
    Replace(Value),
}

/// One modelled device and its migration bookkeeping.
#[derive(Debug)]
pub(crate) struct Dev {
    pub(crate) cfg: ModelDevice,
    pub(crate) state: StateMachine,
    /// Still plugged (not deleted).
    pub(crate) present: bool,
    /// The live `migration-events` property.
    pub(crate) events: bool,
    /// The live `x-migration-multifd-transfer` property (`on`, `off`, `auto`), which
    /// QEMU 10.0 lets a realized device change.
    pub(crate) multifd_transfer: &'static str,
    /// Took part in the current migration.
    in_migration: bool,
    /// When it entered pre-copy in this migration.
    precopy_since: Option<Instant>,
    /// Bytes sent in pre-copy, fixed once pre-copy ended.
    precopy_sent: Option<u64>,
}

/// A held `migrate-continue`: the modelled stop-copy drain.
#[derive(Debug, Clone, Copy)]
struct Hold {
    started: Instant,
    remaining: u64,
    released: bool,
}

/// Migration statuses in which QEMU's `migration_is_running()` is true.
const RUNNING_STATUSES: &[&str] = &[
    "setup",
    "active",
    "cancelling",
    "pre-switchover",
    "device",
    "wait-unplug",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
    "colo",
];

/// Statuses in which QEMU's `query-migrate` carries the `vfio` member.
const VFIO_INFO_STATUSES: &[&str] = &[
    "active",
    "cancelling",
    "pre-switchover",
    "device",
    "wait-unplug",
    "completed",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
];

/// The proxy's model of the VM's VFIO devices. All of it lives behind one lock; every
/// method is synchronous and returns at once.
#[derive(Debug)]
pub(crate) struct Model {
    role: Role,
    link: u64,
    pub(crate) devices: Vec<Dev>,
    /// The last migration status seen (events, polls, or the modelled `device`).
    status: String,
    vm_running: bool,
    events_cap: bool,
    polling: bool,
    /// Counts migrations; timers carry it.
    epoch: u64,
    running_at_start: bool,
    /// Destination: devices already moved to `resuming` in this incoming migration.
    loading: bool,
    /// The `error-desc` of a modelled device failure in this migration.
    device_error: Option<String>,
    hold: Option<Hold>,
    /// The proxy emitted `MIGRATION device` itself; QEMU's own one is hidden.
    synthesized_device: bool,
    transfer_done: bool,
    timeline: Vec<(String, String, SystemTime)>,
    outbox: Vec<Injection>,
    /// Whether injections produced now precede the QEMU event being handled.
    before: bool,
}

impl Model {
    /// A model with every device `running`, as QEMU's `vfio_migration_init` leaves them.
    pub(crate) fn new(cfg: &ProxyConfig) -> Model {
        let devices = cfg
            .devices
            .iter()
            .map(|device| Dev {
                events: device.migration_events,
                multifd_transfer: "auto",
                cfg: device.clone(),
                state: StateMachine::new(),
                present: true,
                in_migration: false,
                precopy_since: None,
                precopy_sent: None,
            })
            .collect();
        Model {
            role: cfg.role,
            link: cfg.link_bytes_per_sec.max(1),
            devices,
            status: "none".into(),
            vm_running: false,
            events_cap: false,
            polling: false,
            epoch: 0,
            running_at_start: false,
            loading: false,
            device_error: None,
            hold: None,
            synthesized_device: false,
            transfer_done: false,
            timeline: Vec::new(),
            outbox: Vec::new(),
            before: false,
        }
    }

    /// Seeds what QEMU said when the proxy connected (`query-status`, capabilities).
    pub(crate) fn set_initial(&mut self, vm_running: bool, events_cap: bool) {
        self.vm_running = vm_running;
        self.events_cap = events_cap;
    }

    /// The role this model plays.
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// Injections produced since the last call, in order.
    pub(crate) fn take_outbox(&mut self) -> Vec<Injection> {
        std::mem::take(&mut self.outbox)
    }

    /// Every device state change so far: (device id, state, when).
    pub(crate) fn timeline(&self) -> Vec<(String, String, SystemTime)> {
        self.timeline.clone()
    }

    /// Whether the proxy should poll `query-migrate`: a migration runs and the `events`
    /// capability is off, so QEMU sends no `MIGRATION` events to follow.
    pub(crate) fn wants_poll(&self) -> bool {
        self.polling && !self.events_cap
    }

    /// An event QEMU emitted (`STOP`, `RESUME`, `MIGRATION`).
    pub(crate) fn on_event(&mut self, name: &str, data: &Value) -> Vec<Action> {
        self.before = false;
        match name {
            "STOP" => {
                self.before = true;
                self.vm_stopped();
                self.before = false;
                Vec::new()
            }
            "RESUME" => {
                self.vm_started();
                Vec::new()
            }
            "MIGRATION" => match status_of(data) {
                Some(status) => self.on_status(status),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// A status the proxy read with its own `query-migrate` poll.
    pub(crate) fn on_polled_status(&mut self, status: &str) -> Vec<Action> {
        self.before = false;
        self.on_status(status)
    }

    /// A command a client sent succeeded; some change what the model must watch.
    pub(crate) fn on_command_ok(&mut self, name: &str, arguments: &Value) -> Vec<Action> {
        self.before = false;
        match name {
            "migrate-set-capabilities" => {
                let capabilities = arguments.get("capabilities").and_then(Value::as_array);
                for capability in capabilities.into_iter().flatten() {
                    if capability.get("capability").and_then(Value::as_str) == Some("events") {
                        if let Some(state) = capability.get("state").and_then(Value::as_bool) {
                            self.events_cap = state;
                        }
                    }
                }
                Vec::new()
            }
            "migrate" if self.role == Role::Source => {
                // Without the `events` capability there is no `MIGRATION setup` to follow:
                // the successful `migrate` stands in for it, then the proxy polls.
                if self.events_cap {
                    return Vec::new();
                }
                self.polling = true;
                self.on_status("setup")
            }
            "migrate-incoming" if self.role == Role::Destination => {
                self.polling = true;
                self.loading = false;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A timer the model asked for has expired.
    pub(crate) fn on_timer(&mut self, timer: Timer) -> Vec<Action> {
        self.before = false;
        let saving = self.vm_running && matches!(self.status.as_str(), "setup" | "active");
        match timer {
            Timer::Saving { epoch, device } if epoch == self.epoch && saving => {
                match self.devices.get(device) {
                    Some(dev) if dev.present => self.enter_precopy(device),
                    _ => Vec::new(),
                }
            }
            Timer::Error { epoch, device } if epoch == self.epoch && saving => {
                let Some(dev) = self.devices.get(device).filter(|d| d.present) else {
                    return Vec::new();
                };
                if self.device_error.is_some() {
                    return Vec::new();
                }
                // QEMU fails the migration when a device's save handler errors; the
                // proxy cannot make QEMU's save fail, so it cancels and shows `failed`.
                self.device_error = Some(format!("vfio: error while saving device {} state", dev.cfg.id));
                vec![Action::Upstream("migrate_cancel", json!({}))]
            }
            Timer::Unplug { epoch, device } if epoch == self.epoch => {
                if self.devices.get(device).is_some_and(|d| d.present) {
                    self.unplug(device);
                }
                Vec::new()
            }
            Timer::Release { epoch } if epoch == self.epoch => match &mut self.hold {
                Some(hold) if !hold.released => {
                    hold.released = true;
                    vec![Action::Upstream(
                        "migrate-continue",
                        json!({"state": "pre-switchover"}),
                    )]
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// `migrate-continue` while QEMU waits in `pre-switchover`: models stop-copy. Returns
    /// how long the drain takes, or `None` when this is not the moment (then the command
    /// goes to QEMU as it is). QEMU would answer at once and spend the drain in status
    /// `device`; the proxy answers at once too, shows `device`, and holds QEMU back.
    pub(crate) fn begin_hold(&mut self) -> Option<(Duration, Vec<Action>)> {
        let paused_for_switchover = self.role == Role::Source
            && !self.vm_running
            && matches!(self.status.as_str(), "active" | "pre-switchover")
            && self.epoch > 0
            && self.device_error.is_none();
        if !paused_for_switchover || self.hold.is_some() {
            return None;
        }
        self.before = false;
        let mut remaining = 0u64;
        let mut extra = Duration::ZERO;
        for dev in self.devices.iter().filter(|d| d.present && d.in_migration) {
            remaining += dev.cfg.state_size.saturating_sub(dev.precopy_sent.unwrap_or(0));
            extra += dev.cfg.fault.extra_stop_copy();
        }
        let drain = Duration::from_secs_f64(remaining as f64 / self.link as f64) + extra;
        self.hold = Some(Hold {
            started: Instant::now(),
            remaining,
            released: false,
        });
        if self.events_cap {
            self.synthesized_device = true;
            self.push(event_line("MIGRATION", json!({"status": "device"})));
        }
        self.status = "device".into();
        self.device_step();
        let release = Timer::Release { epoch: self.epoch };
        Some((drain, vec![Action::Timer(drain, release)]))
    }

    /// Whether a second `migrate-continue` arrived while the first is held: QEMU would
    /// refuse it, being in `device` already.
    pub(crate) fn holding(&self) -> bool {
        self.hold.is_some_and(|h| !h.released) && self.status == "device"
    }

    /// `device_del` for a modelled device: `Ok` unplugs it (`DEVICE_DELETED` follows);
    /// `Err((class, desc))` is QEMU's refusal. `None` when the id is not modelled.
    pub(crate) fn device_del(&mut self, id: &str) -> Option<Result<(), (&'static str, String)>> {
        let index = self.devices.iter().position(|d| d.present && d.cfg.id == id)?;
        // qdev_unplug: "device_del not allowed while migrating" (vfio-pci does not set
        // allow_unplug_during_migration). Only the outgoing migration counts.
        if self.role == Role::Source && RUNNING_STATUSES.contains(&self.status.as_str()) {
            return Some(Err((
                "GenericError",
                "device_del not allowed while migrating".into(),
            )));
        }
        self.before = false;
        self.unplug(index);
        Some(Ok(()))
    }

    /// How a client should see QEMU's `MIGRATION {status}` event.
    pub(crate) fn client_view(&self, data: &Value) -> EventView {
        if self.role != Role::Source {
            return EventView::Keep;
        }
        match status_of(data) {
            Some("cancelling") if self.device_error.is_some() => EventView::Drop,
            Some("cancelled") if self.device_error.is_some() => {
                EventView::Replace(json!({"status": "failed"}))
            }
            Some("device") if self.synthesized_device => EventView::Drop,
            _ => EventView::Keep,
        }
    }

    /// Rewrites the `return` of `query-migrate` on the source: the modelled failure, the
    /// modelled `device` status, and the `vfio` member QEMU adds when VFIO devices migrate.
    pub(crate) fn rewrite_query_migrate(&self, info: &mut Map<String, Value>) {
        if self.role != Role::Source {
            return;
        }
        let status = info
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned();
        if let Some(desc) = &self.device_error {
            if matches!(status.as_str(), "cancelling" | "cancelled") {
                info.clear();
                info.insert("status".into(), json!("failed"));
                info.insert("error-desc".into(), json!(desc));
                return;
            }
        }
        if status == "pre-switchover" && self.hold.is_some() {
            info.insert("status".into(), json!("device"));
        }
        let status = info.get("status").and_then(Value::as_str).unwrap_or("none");
        let migrating = self.devices.iter().any(|d| d.in_migration || d.present);
        if migrating && self.epoch > 0 && VFIO_INFO_STATUSES.contains(&status) {
            info.insert(
                "vfio".into(),
                json!({"transferred": self.transferred(Instant::now())}),
            );
        }
    }

    /// Device bytes sent so far in this migration: pre-copy devices send half their state
    /// while the VM runs (at the link speed); the rest drains during the held stop-copy.
    pub(crate) fn transferred(&self, now: Instant) -> u64 {
        let migrating = self.devices.iter().filter(|d| d.in_migration);
        if self.transfer_done {
            return migrating
                .map(|d| {
                    if d.present {
                        d.cfg.state_size
                    } else {
                        d.precopy_sent.unwrap_or(0)
                    }
                })
                .sum();
        }
        let precopy: u64 = migrating.map(|d| self.precopy_sent_at(d, now)).sum();
        let drained = self.hold.map_or(0, |h| {
            self.bytes_in(now.saturating_duration_since(h.started))
                .min(h.remaining)
        });
        precopy + drained
    }

    fn precopy_sent_at(&self, dev: &Dev, now: Instant) -> u64 {
        if let Some(sent) = dev.precopy_sent {
            return sent;
        }
        dev.precopy_since.map_or(0, |since| {
            self.bytes_in(now.saturating_duration_since(since))
                .min(dev.cfg.state_size / 2)
        })
    }

    fn bytes_in(&self, elapsed: Duration) -> u64 {
        let bytes = u128::from(self.link) * elapsed.as_micros() / 1_000_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    fn on_status(&mut self, status: &str) -> Vec<Action> {
        if self.hold.is_some() && status == "pre-switchover" {
            return Vec::new();
        }
        if status == self.status {
            return Vec::new();
        }
        self.status = status.to_owned();
        match self.role {
            Role::Source => self.source_status(status),
            Role::Destination => self.destination_status(status),
        }
    }

    fn source_status(&mut self, status: &str) -> Vec<Action> {
        match status {
            "setup" => self.start_saving(),
            "device" => {
                self.device_step();
                Vec::new()
            }
            "completed" => {
                self.device_step();
                self.freeze_precopy();
                for i in self.migrating() {
                    self.step(i, Step::SaveCleanup);
                }
                self.transfer_done = true;
                self.polling = false;
                Vec::new()
            }
            "failed" | "cancelled" => {
                self.freeze_precopy();
                self.polling = false;
                if self.vm_running || !self.running_at_start {
                    for i in self.present() {
                        self.step(i, Step::PrecopyFailed);
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn destination_status(&mut self, status: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        if status == "setup" {
            self.loading = false;
        }
        if matches!(status, "active" | "completed") && !self.loading {
            self.loading = true;
            self.epoch += 1;
            for i in self.present() {
                self.devices[i].in_migration = true;
                self.step(i, Step::LoadSetup);
                if let Fault::UnplugDuringMigration { after } = self.devices[i].cfg.fault {
                    actions.push(Action::Timer(
                        after,
                        Timer::Unplug {
                            epoch: self.epoch,
                            device: i,
                        },
                    ));
                }
            }
        }
        if matches!(status, "completed" | "failed" | "cancelled") {
            self.polling = false;
        }
        actions
    }

    /// QEMU's save setup: a new migration begins.
    fn start_saving(&mut self) -> Vec<Action> {
        self.epoch += 1;
        self.device_error = None;
        self.hold = None;
        self.synthesized_device = false;
        self.transfer_done = false;
        self.running_at_start = self.vm_running;
        let mut actions = Vec::new();
        for dev in &mut self.devices {
            dev.in_migration = dev.present;
            dev.precopy_since = None;
            dev.precopy_sent = None;
        }
        for i in self.present() {
            let (dev, epoch) = (&self.devices[i], self.epoch);
            let saves = dev.state.next(&dev.cfg, Step::SaveSetup).is_some();
            let (precopy, fault) = (dev.cfg.precopy, dev.cfg.fault);
            match fault.saving_delay() {
                Some(Duration::ZERO) if saves => actions.extend(self.enter_precopy(i)),
                Some(delay) if saves => {
                    actions.push(Action::Timer(delay, Timer::Saving { epoch, device: i }))
                }
                _ => {}
            }
            match fault {
                Fault::ErrorInPrecopy { after } if !precopy => {
                    actions.push(Action::Timer(after, Timer::Error { epoch, device: i }))
                }
                Fault::UnplugDuringMigration { after } => {
                    actions.push(Action::Timer(after, Timer::Unplug { epoch, device: i }))
                }
                _ => {}
            }
        }
        actions
    }

    /// The device's save setup, when it is due (at setup, or late for a slow device):
    /// pre-copy starts, and with it a pre-copy fault's clock.
    fn enter_precopy(&mut self, i: usize) -> Vec<Action> {
        if !self.step(i, Step::SaveSetup) {
            return Vec::new();
        }
        self.devices[i].precopy_since = Some(Instant::now());
        match self.devices[i].cfg.fault {
            Fault::ErrorInPrecopy { after } => {
                vec![Action::Timer(
                    after,
                    Timer::Error {
                        epoch: self.epoch,
                        device: i,
                    },
                )]
            }
            _ => Vec::new(),
        }
    }

    /// `vfio_save_complete_precopy`: every migrating device goes to stop-copy.
    fn device_step(&mut self) {
        for i in self.migrating() {
            self.step(i, Step::SaveComplete);
        }
    }

    fn vm_stopped(&mut self) {
        if !self.vm_running {
            return;
        }
        self.vm_running = false;
        self.freeze_precopy();
        self.run_state_changed(false);
    }

    fn vm_started(&mut self) {
        if self.vm_running {
            return;
        }
        self.vm_running = true;
        self.run_state_changed(true);
    }

    /// QEMU's VM state callbacks: each step over every device before the next.
    fn run_state_changed(&mut self, running: bool) {
        for step in run_state_change(running) {
            for i in self.present() {
                self.step(i, step);
            }
        }
    }

    /// Pre-copy is over: what each device sent so far stays counted.
    fn freeze_precopy(&mut self) {
        let now = Instant::now();
        for i in 0..self.devices.len() {
            if self.devices[i].precopy_sent.is_none() && self.devices[i].precopy_since.is_some() {
                let sent = self.precopy_sent_at(&self.devices[i], now);
                self.devices[i].precopy_sent = Some(sent);
            }
        }
    }

    fn unplug(&mut self, i: usize) {
        let dev = &mut self.devices[i];
        dev.present = false;
        let data = json!({"device": dev.cfg.id, "path": dev.cfg.qom_path()});
        self.push(event_line("DEVICE_DELETED", data));
    }

    fn present(&self) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| self.devices[i].present)
            .collect()
    }

    fn migrating(&self) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| self.devices[i].present && self.devices[i].in_migration)
            .collect()
    }

    /// Takes a step for a device; a change goes on the timeline and, as
    /// `vfio_migration_send_event` does, is reported when the device reports changes.
    /// Whether the device moved.
    fn step(&mut self, i: usize, step: Step) -> bool {
        let dev = &mut self.devices[i];
        let Some(next) = dev.state.apply(&dev.cfg, step) else {
            return false;
        };
        self.timeline
            .push((dev.cfg.id.clone(), next.name().to_owned(), SystemTime::now()));
        if dev.cfg.reports(dev.events) {
            let data =
                json!({"device-id": dev.cfg.id, "qom-path": dev.cfg.qom_path(), "device-state": next.name()});
            self.push(event_line("VFIO_MIGRATION", data));
        }
        true
    }

    fn push(&mut self, line: String) {
        self.outbox.push(Injection {
            line,
            before: self.before,
        });
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
