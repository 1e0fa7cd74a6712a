//! What the engine's requests do to the simulated QEMUs, command by command, with
//! QEMU's refusals (class and text) where QEMU refuses.

use std::time::Duration;

use engine::driver::{
    DeviceInfo, DirtyRate, DirtyRateMode, MigrationStatus, OnOffAuto, RunState, Sample, Setup, Side,
    SideFacts, StreamStats, Throttle,
};

use super::model::{Model, Probe, DIRTY_LIMIT_PERIOD};
use super::{MIB, PAGE_SIZE};

/// The version both sides report.
pub(super) const VERSION: &str = "10.0.2 (sim)";
/// The KVM dirty ring size a guest with the ring is taken to have.
const DIRTY_RING_SIZE: u64 = 4096;
/// QEMU's largest `downtime-limit`, ms.
const MAX_DOWNTIME_MS: u64 = 2_000_000;
/// QEMU's text for a request made while a migration runs (`QERR_MIGRATION_ACTIVE`).
const MIGRATION_ACTIVE: &str = "There's a migration process in progress";

/// QEMU refused a command.
#[derive(Debug)]
pub(super) struct Refusal {
    /// The QMP command.
    pub(super) command: &'static str,
    /// QEMU's error class.
    pub(super) class: &'static str,
    /// QEMU's text.
    pub(super) desc: String,
}

fn refuse(command: &'static str, desc: impl Into<String>) -> Refusal {
    Refusal {
        command,
        class: "GenericError",
        desc: desc.into(),
    }
}

/// QEMU's `QERR_INVALID_PARAMETER_VALUE`.
fn bad_parameter(command: &'static str, name: &str, range: &str) -> Refusal {
    refuse(command, format!("Parameter '{name}' expects {range}"))
}

/// QEMU's spelling of a migration status.
pub(super) fn status_name(status: &MigrationStatus) -> &str {
    match status {
        MigrationStatus::None => "none",
        MigrationStatus::Setup => "setup",
        MigrationStatus::Active => "active",
        MigrationStatus::PreSwitchover => "pre-switchover",
        MigrationStatus::Device => "device",
        MigrationStatus::Completed => "completed",
        MigrationStatus::Failed => "failed",
        MigrationStatus::Cancelling => "cancelling",
        MigrationStatus::Cancelled => "cancelled",
        MigrationStatus::Other(s) => s,
    }
}

type Reply<T> = Result<T, Refusal>;

impl Model {
    fn migrating(&self) -> bool {
        self.mig.as_ref().is_some_and(|m| m.is_running())
    }

    /// `query-status`, `query-migrate`, `query-kvm`, `query-memory-size-summary`; the dirty
    /// ring is seen on the source only (the QMP backend probes it there).
    pub(super) fn facts(&self, side: Side) -> SideFacts {
        SideFacts {
            version: VERSION.to_string(),
            run_state: self.run_state(side),
            migration: match side {
                Side::Source => self.status(),
                Side::Destination => self.dst_status.clone(),
            },
            blocked_reasons: Vec::new(),
            dirty_ring_size: (side == Side::Source && self.dirty_ring).then_some(DIRTY_RING_SIZE),
            kvm: self.kvm,
            ram_bytes: Some(self.ram_bytes),
            // The simulated stream is one connection whatever is asked: nothing to judge.
            migration_capabilities: None,
        }
    }

    /// `query-status`.
    pub(super) fn run_state(&self, side: Side) -> RunState {
        match side {
            Side::Source => self.src_run.clone(),
            Side::Destination => self.dst_run.clone(),
        }
    }

    /// `migrate-incoming` on a destination started with `-incoming defer`.
    pub(super) fn listen(&mut self, uri: &str) -> Reply<()> {
        const CMD: &str = "migrate-incoming";
        if self.dst_run != RunState::InMigrate {
            return Err(refuse(CMD, "'-incoming' was not specified on the command line"));
        }
        if matches!(self.dst_status, MigrationStatus::Setup | MigrationStatus::Active) {
            return Err(refuse(CMD, "The incoming migration has already been started"));
        }
        if !uri.contains(':') {
            return Err(refuse(CMD, format!("unknown migration protocol: {uri}")));
        }
        self.listening = true;
        self.dst_status = MigrationStatus::Setup;
        Ok(())
    }

    /// What the QMP backend's `configure` sets: the `events` and
    /// `pause-before-switchover` capabilities, auto-converge armed at 1% when asked,
    /// `switchover-ack` with `return-path`, the downtime limit and `max-bandwidth`.
    /// `setup.tls` is ignored: the simulated stream never leaves the process, so there
    /// is nothing to encrypt, and no credentials are added or removed.
    pub(super) fn configure(&mut self, setup: &Setup) -> Reply<()> {
        if self.migrating() {
            return Err(refuse("migrate-set-capabilities", MIGRATION_ACTIVE));
        }
        if setup.downtime_limit_ms > MAX_DOWNTIME_MS {
            return Err(downtime_range());
        }
        self.saved = Some((self.caps, self.params));
        self.caps.events = true;
        self.caps.pause_before_switchover = true;
        self.caps.auto_converge = setup.arm_auto_converge;
        if setup.switchover_ack {
            self.caps.return_path = true;
            self.caps.switchover_ack = true;
        }
        self.params.downtime_limit_ms = setup.downtime_limit_ms;
        if let Some(bandwidth) = setup.max_bandwidth {
            self.params.max_bandwidth = bandwidth;
        }
        if setup.arm_auto_converge {
            self.params.throttle_initial = 1;
            self.params.throttle_increment = 1;
            self.params.throttle_max = 1;
        }
        Ok(())
    }

    /// `migrate`. A destination that does not listen refuses the connection, which QEMU
    /// reports as a failed migration, not as an error of the command.
    pub(super) fn start(&mut self, uri: &str) -> Reply<()> {
        const CMD: &str = "migrate";
        if self.migrating() {
            return Err(refuse(CMD, MIGRATION_ACTIVE));
        }
        if self.src_run == RunState::PostMigrate {
            return Err(refuse(
                CMD,
                "Can't migrate the vm that was paused due to previous migration",
            ));
        }
        let refused = (!self.listening).then(|| {
            let address = uri.split_once(':').map_or(uri, |(_, a)| a);
            format!("Failed to connect to '{address}': Connection refused")
        });
        self.begin_migration(refused);
        Ok(())
    }

    /// `query-migrate` on the source, read the way the QMP backend reads it: statistics
    /// only while QEMU shows them (not in `setup`, `failed` or `cancelled`), `mbps`
    /// converted back to bytes/s, `vfio` only with VFIO devices, the throttle only with
    /// auto-converge on.
    pub(super) fn sample(&self) -> Sample {
        let status = self.status();
        let mut s = Sample {
            at: self.now,
            status: status.clone(),
            total_bytes: 0,
            remaining_bytes: 0,
            transferred_bytes: 0,
            dirty_pages_rate: 0,
            page_size: PAGE_SIZE,
            dirty_sync_count: 0,
            bandwidth: 0,
            expected_downtime_ms: None,
            downtime_ms: None,
            total_time_ms: None,
            setup_time_ms: None,
            vfio_transferred_bytes: None,
            cpu_throttle_percentage: None,
            error: None,
            stream: StreamStats::default(),
        };
        let Some(m) = &self.mig else {
            return s;
        };
        let completed = status == MigrationStatus::Completed;
        match status {
            MigrationStatus::Active
            | MigrationStatus::PreSwitchover
            | MigrationStatus::Device
            | MigrationStatus::Cancelling
            | MigrationStatus::Completed => {
                let vfio = self.devices.iter().any(|d| d.present);
                s.total_bytes = self.ram_bytes;
                s.transferred_bytes = m.ram_transferred + if vfio { m.vfio_transferred } else { 0 };
                if !completed {
                    s.remaining_bytes = self.ram.remaining_bytes();
                    s.dirty_pages_rate = m.dirty_pages_rate;
                }
                s.dirty_sync_count = m.dirty_sync_count;
                let mbps = m.bandwidth * 8.0 / 1e6;
                s.bandwidth = (mbps.max(0.0) * 1e6 / 8.0) as u64;
                s.setup_time_ms = Some(m.setup_time_ms.unwrap_or(0));
                if completed {
                    s.total_time_ms = m.total_time_ms;
                    s.downtime_ms = m.downtime_ms;
                } else {
                    s.total_time_ms = Some(self.now.saturating_duration_since(m.started).as_millis() as u64);
                    s.expected_downtime_ms = Some(m.expected_downtime_ms);
                }
                s.vfio_transferred_bytes = vfio.then_some(m.vfio_transferred);
                s.cpu_throttle_percentage = self.caps.auto_converge.then_some(u64::from(self.throttle_pct));
            }
            MigrationStatus::Failed => s.error = m.error.clone(),
            _ => {}
        }
        s
    }

    /// `calc-dirty-rate`. A measurement already running is not an error here: the QMP
    /// backend takes QEMU's "already being measured" as success.
    pub(super) fn calc_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Reply<()> {
        if matches!(self.probe, Probe::Measuring { .. }) {
            return Ok(());
        }
        let (name, usable) = match mode {
            DirtyRateMode::DirtyRing => ("dirty-ring", self.dirty_ring),
            DirtyRateMode::DirtyBitmap => ("dirty-bitmap", !self.dirty_ring),
        };
        if !usable {
            return Err(refuse(
                "calc-dirty-rate",
                format!("mode {name} is not enabled, use other method instead."),
            ));
        }
        self.probe = Probe::Measuring {
            mode,
            start: self.now,
            end: self.now + calc,
            written_at_start: self.ram.written(),
        };
        Ok(())
    }

    /// `query-dirty-rate`: the last result, `None` while measuring or before any; per-vCPU
    /// rates (one vCPU) in dirty-ring mode.
    pub(super) fn query_dirty_rate(&self) -> Option<DirtyRate> {
        match &self.probe {
            Probe::Measured { mode, mib_per_sec } => {
                let bytes_per_sec = mib_per_sec * MIB;
                Some(DirtyRate {
                    bytes_per_sec,
                    per_vcpu: match mode {
                        DirtyRateMode::DirtyRing => vec![bytes_per_sec],
                        DirtyRateMode::DirtyBitmap => Vec::new(),
                    },
                    mode: *mode,
                })
            }
            _ => None,
        }
    }

    /// `migrate-set-parameters {downtime-limit}`; takes effect at the next iteration.
    pub(super) fn set_downtime_limit(&mut self, ms: u64) -> Reply<()> {
        if ms > MAX_DOWNTIME_MS {
            return Err(downtime_range());
        }
        self.params.downtime_limit_ms = ms;
        Ok(())
    }

    /// `migrate-set-parameters {max-bandwidth}`: QEMU applies it to the running stream at
    /// once (`migration_rate_set`), so the next tick sends at the new rate.
    pub(super) fn set_max_bandwidth(&mut self, bytes_per_sec: u64) -> Reply<()> {
        self.params.max_bandwidth = bytes_per_sec;
        Ok(())
    }

    /// Auto-converge's parameters (`migrate-set-parameters`), or `set-vcpu-dirty-limit`,
    /// which needs KVM with the dirty ring (QEMU's text keeps its stray quote).
    pub(super) fn throttle(&mut self, throttle: &Throttle) -> Reply<()> {
        match throttle {
            Throttle::AutoConverge {
                initial,
                increment,
                max,
            } => {
                const CMD: &str = "migrate-set-parameters";
                let in_range = |v: u8, hi: u8| (1..=hi).contains(&v);
                if !in_range(*initial, 99) {
                    return Err(bad_parameter(
                        CMD,
                        "cpu_throttle_initial",
                        "an integer in the range of 1 to 99",
                    ));
                }
                if !in_range(*increment, 100) {
                    return Err(bad_parameter(
                        CMD,
                        "cpu_throttle_increment",
                        "an integer in the range of 1 to 100",
                    ));
                }
                if !in_range(*max, 99) {
                    return Err(bad_parameter(
                        CMD,
                        "max_cpu_throttle",
                        "an integer in the range of 1 to 99",
                    ));
                }
                self.params.throttle_initial = *initial;
                self.params.throttle_increment = *increment;
                self.params.throttle_max = *max;
                Ok(())
            }
            Throttle::DirtyLimit { mib_per_sec } => {
                if !self.dirty_ring {
                    return Err(refuse(
                        "set-vcpu-dirty-limit",
                        "dirty page limit feature requires KVM with accelerator property 'dirty-ring-size' set'",
                    ));
                }
                self.dirty_limit_mib = (*mib_per_sec > 0).then_some(*mib_per_sec);
                self.dirty_limit_pending = self
                    .dirty_limit_mib
                    .map(|limit| (limit, self.now + DIRTY_LIMIT_PERIOD));
                Ok(())
            }
        }
    }

    /// `cancel-vcpu-dirty-limit` when a limit is set (auto-converge ends with the
    /// migration by itself).
    pub(super) fn release_throttle(&mut self) -> Reply<()> {
        self.dirty_limit_mib = None;
        self.dirty_limit_holding = None;
        self.dirty_limit_pending = None;
        Ok(())
    }

    /// `stop` on the source: the VM pauses (a no-op when it is not running).
    pub(super) fn stop_source(&mut self) -> Reply<()> {
        self.stop_vm("paused");
        Ok(())
    }

    /// `migrate-continue {state: pre-switchover}`.
    pub(super) fn continue_switchover(&mut self) -> Reply<()> {
        if self.continue_from_pre_switchover() {
            return Ok(());
        }
        let status = self.status();
        Err(refuse(
            "migrate-continue",
            format!("Migration not in expected state: {}", status_name(&status)),
        ))
    }

    /// `cont` on a side. A VM stopped for the switchover cannot be started; a destination
    /// still loading starts as soon as it has loaded (QEMU sets `autostart`).
    pub(super) fn resume(&mut self, side: Side) -> Reply<()> {
        let state = self.run_state(side);
        match state {
            RunState::Running | RunState::Gone | RunState::NotAnswering { .. } => Ok(()),
            RunState::InMigrate => {
                self.dst_autostart = true;
                Ok(())
            }
            RunState::Paused { reason } if reason == "finish-migrate" => {
                Err(refuse("cont", "Migration is not finalized yet"))
            }
            RunState::Paused { .. } | RunState::PostMigrate => {
                self.start_vm(side);
                Ok(())
            }
        }
    }

    /// Puts back the parameters, then the capabilities, `configure` changed; QEMU refuses
    /// capability changes while a migration runs.
    pub(super) fn restore(&mut self) -> Reply<()> {
        let Some((caps, params)) = self.saved.take() else {
            return Ok(());
        };
        self.params = params;
        if self.migrating() {
            return Err(refuse("migrate-set-capabilities", MIGRATION_ACTIVE));
        }
        self.caps = caps;
        Ok(())
    }

    /// `qom-list /machine/peripheral` and `qom-get migration-events`.
    pub(super) fn vfio_devices(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .filter(|d| d.present)
            .map(|d| DeviceInfo {
                id: d.cfg.id.clone(),
                qom_path: d.cfg.qom_path(),
                type_name: "vfio-pci".into(),
                migration_events: Some(d.events),
                multifd_transfer: Some(OnOffAuto::Auto),
            })
            .collect()
    }

    /// `qom-set migration-events true`: QEMU refuses it on a realized device, unless the
    /// device is configured to allow it (as the device model allows it).
    pub(super) fn enable_migration_events(&mut self, qom_path: &str) -> Reply<()> {
        const CMD: &str = "qom-set";
        match self.devices.iter_mut().find(|d| d.present && d.cfg.qom_path() == qom_path) {
            Some(d) if d.cfg.allow_runtime_migration_events => {
                d.events = true;
                Ok(())
            }
            Some(d) => Err(refuse(
                CMD,
                format!(
                    "Attempt to set property 'migration-events' on device '{}' (type 'vfio-pci') after it was realized",
                    d.cfg.id
                ),
            )),
            None => Err(Refusal {
                command: CMD,
                class: "DeviceNotFound",
                desc: format!("Device '{qom_path}' not found"),
            }),
        }
    }
}

fn downtime_range() -> Refusal {
    bad_parameter(
        "migrate-set-parameters",
        "downtime_limit",
        "an integer in the range of 0 to 2000 seconds",
    )
}
