//! Switchover and the ways a migration ends: the VM stops, `pre-switchover`, the device
//! stage, completion; failure, cancel, and device faults.

use std::collections::VecDeque;
use std::time::Duration;

use engine::driver::{DriverEvent, MigrationStatus, RunState, Side};

use super::devices;
use super::model::{secs, Model, Segment, Stage, CANCEL_TIME};
use crate::vfio::{Fault, Step};

impl Model {
    /// `migration_completion_precopy`: the VM stops, then `pre-switchover` (when
    /// `pause-before-switchover` is on) or straight on to the device stage.
    pub(super) fn begin_completion(&mut self) {
        let now = self.now;
        let live = self.src_run == RunState::Running;
        if let Some(m) = &mut self.mig {
            m.downtime_start = Some(now);
            m.vm_old_live = live;
        }
        self.stop_vm("finish-migrate");
        if self.caps.pause_before_switchover {
            if let Some(m) = &mut self.mig {
                m.stage = Stage::PreSwitchover;
            }
            self.set_status(MigrationStatus::PreSwitchover);
        } else {
            self.start_device_stage();
        }
    }

    /// The source VM stops for `reason` (QEMU's run state name): device callbacks, then
    /// `STOP` (`do_vm_stop`). A VM that is not running emits nothing; only the switchover
    /// changes its run state then (`vm_stop_force_state`), a plain `stop` does not.
    pub(super) fn stop_vm(&mut self, reason: &str) {
        let running = self.src_run == RunState::Running;
        if running {
            let out = self.out.clone();
            devices::run_state_changed(&mut self.devices, Side::Source, false, self.now, &out);
            self.emit(DriverEvent::Stop {
                side: Side::Source,
                at: self.now,
            });
            self.paused_since.get_or_insert(self.now);
        }
        if running || reason == "finish-migrate" {
            self.src_run = RunState::Paused {
                reason: reason.to_string(),
            };
        }
    }

    /// A side's VM starts: `RESUME`, then its devices' callbacks.
    pub(super) fn start_vm(&mut self, side: Side) {
        let now = self.now;
        self.emit(DriverEvent::Resume { side, at: now });
        if let Some(since) = self.paused_since.take() {
            self.paused_total += now.saturating_duration_since(since);
        }
        let out = self.out.clone();
        devices::run_state_changed(&mut self.devices, side, true, now, &out);
        match side {
            Side::Source => self.src_run = RunState::Running,
            Side::Destination => self.dst_run = RunState::Running,
        }
    }

    /// `migrate-continue` at `pre-switchover`: status `device`, then the device stage.
    /// False when the migration does not wait there.
    pub(super) fn continue_from_pre_switchover(&mut self) -> bool {
        let waiting = self
            .mig
            .as_ref()
            .is_some_and(|m| matches!(m.stage, Stage::PreSwitchover));
        if waiting {
            self.set_status(MigrationStatus::Device);
            self.start_device_stage();
        }
        waiting
    }

    /// After `migrate-continue` (or at once without `pause-before-switchover`): a last
    /// sync, then the rest of RAM and each device's state at the link's speed.
    pub(super) fn start_device_stage(&mut self) {
        self.sync();
        let mut queue: VecDeque<(Option<usize>, u64)> = VecDeque::new();
        queue.push_back((None, self.ram.wire_pending()));
        for (i, d) in self.devices.iter().enumerate().filter(|(_, d)| d.present) {
            queue.push_back((Some(i), d.cfg.state_size));
        }
        self.next_segment(queue);
    }

    /// Starts the next piece of the device stage, or completes when none is left.
    pub(super) fn next_segment(&mut self, mut queue: VecDeque<(Option<usize>, u64)>) {
        let now = self.now;
        let Some((device, bytes)) = queue.pop_front() else {
            self.complete();
            return;
        };
        let mut time = Duration::from_secs_f64(bytes as f64 / self.link as f64);
        if let Some(i) = device {
            // `vfio_save_complete_precopy`: a device that is not in stop-copy yet (no
            // pre-copy) goes there now, and drains.
            let out = self.out.clone();
            self.devices[i].step(Side::Source, Step::SaveComplete, now, &out);
            time += self.devices[i].cfg.fault.extra_stop_copy();
        }
        let current = Segment {
            device,
            bytes,
            end: now + time,
        };
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Device { current, queue };
        }
    }

    /// A piece of the device stage has been sent.
    pub(super) fn segment_done(&mut self) {
        let Some(m) = &mut self.mig else {
            return;
        };
        let Stage::Device { current, queue } = std::mem::replace(&mut m.stage, Stage::Ended) else {
            return;
        };
        match current.device {
            None => m.ram_transferred += self.ram.send_all(),
            Some(_) => m.vfio_transferred += current.bytes,
        }
        self.next_segment(queue);
    }

    /// Status `completed`; the source is `postmigrate`, the destination holds the VM
    /// (paused, having been started with `-S`, unless `cont` came while it loaded); then
    /// `vfio_save_cleanup` moves the source devices from `stop-copy` to `stop`.
    pub(super) fn complete(&mut self) {
        let now = self.now;
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Ended;
            let total = now.saturating_duration_since(m.started);
            m.total_time_ms = Some(total.as_millis() as u64);
            m.downtime_ms = m
                .downtime_start
                .map(|start| now.saturating_duration_since(start).as_millis() as u64);
            // `migration_calculate_complete`: throughput over the whole transfer.
            let transfer = secs(total) - m.setup_time_ms.unwrap_or(0) as f64 / 1000.0;
            if transfer > 0.0 {
                m.bandwidth = (m.ram_transferred + m.vfio_transferred) as f64 / transfer;
            }
        }
        self.set_status(MigrationStatus::Completed);
        self.src_run = RunState::PostMigrate;
        self.ram.stop_logging();
        self.throttle_pct = 0;
        self.lost_pages = self.ram.lost_pages();
        self.dst_status = MigrationStatus::Completed;
        if self.dst_autostart {
            self.start_vm(Side::Destination);
        } else {
            self.dst_run = RunState::Paused {
                reason: "paused".into(),
            };
        }
        let out = self.out.clone();
        devices::step_all(&mut self.devices, Side::Source, Step::SaveCleanup, now, &out);
    }

    /// The migration fails: `failed`, a VM the migration stopped is restarted if it ran
    /// before, the devices go back to `running`, the destination's load fails.
    pub(super) fn fail(&mut self, error: String) {
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Ended;
            m.error = Some(error);
        }
        self.set_status(MigrationStatus::Failed);
        self.unwind();
    }

    /// `migrate_cancel`: `cancelling`, then `cancelled` a moment later.
    pub(super) fn cancel(&mut self) {
        let until = self.now + CANCEL_TIME;
        let Some(m) = &mut self.mig else {
            return;
        };
        if !m.is_running() || matches!(m.stage, Stage::Cancelling { .. }) {
            return;
        }
        m.stage = Stage::Cancelling { until };
        self.set_status(MigrationStatus::Cancelling);
    }

    /// The migration thread has noticed the cancel: `cancelled`.
    pub(super) fn finish_cancel(&mut self) {
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Ended;
        }
        self.restart_after_migration();
        self.set_status(MigrationStatus::Cancelled);
        self.cleanup_after_failure();
    }

    /// What follows a failure: the VM restarted if the migration stopped it, cleanup.
    pub(super) fn unwind(&mut self) {
        self.restart_after_migration();
        self.cleanup_after_failure();
    }

    /// `migration_iteration_finish` for a failed or cancelled migration: a VM stopped for
    /// the switchover starts again if it ran before; one paused by the operator stays so.
    pub(super) fn restart_after_migration(&mut self) {
        let stopped_by_migration =
            matches!(&self.src_run, RunState::Paused { reason } if reason == "finish-migrate");
        if !stopped_by_migration {
            return;
        }
        let live = self.mig.as_ref().is_some_and(|m| m.vm_old_live);
        if live {
            self.start_vm(Side::Source);
        } else {
            self.src_run = RunState::Paused {
                reason: "paused".into(),
            };
        }
    }

    /// `migrate_fd_cleanup` after a failure or cancel: devices back to `running`
    /// (`MIG_EVENT_PRECOPY_FAILED`), dirty logging and the throttle off.
    pub(super) fn cleanup_after_failure(&mut self) {
        let out = self.out.clone();
        devices::step_all(
            &mut self.devices,
            Side::Source,
            Step::PrecopyFailed,
            self.now,
            &out,
        );
        self.ram.stop_logging();
        self.throttle_pct = 0;
        if self.dst_status == MigrationStatus::Active {
            // The stream ends early: the destination's load fails.
            self.dst_status = MigrationStatus::Failed;
        }
    }

    /// A device's fault goes off.
    pub(super) fn fault(&mut self, i: usize) {
        let now = self.now;
        let active = self.status() == MigrationStatus::Active;
        let vm_running = self.src_run == RunState::Running;
        let out = self.out.clone();
        let d = &mut self.devices[i];
        match d.cfg.fault {
            Fault::SlowToSaving(_) if active && d.present && vm_running => {
                d.step(Side::Source, Step::SaveSetup, now, &out);
            }
            Fault::ErrorInPrecopy { .. } if active && d.present && d.state.is_precopy() => {
                let error = format!("vfio: error while saving device {} state", d.cfg.id);
                self.fail(error);
            }
            Fault::UnplugDuringMigration { .. } if d.present => {
                d.present = false;
                let event = DriverEvent::DeviceDeleted {
                    side: Side::Source,
                    id: Some(d.cfg.id.clone()),
                    qom_path: d.cfg.qom_path(),
                    at: now,
                };
                self.emit(event);
            }
            _ => {}
        }
    }
}
