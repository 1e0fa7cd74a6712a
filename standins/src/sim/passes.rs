//! The migration thread while the guest runs: setup, 100 ms iterations, bitmap syncs,
//! auto-converge, and the switchover decision (QEMU's `migration_iteration_run`).

use engine::driver::{DirtyRateMode, DriverEvent, MigrationStatus, Side};

use super::devices;
use super::model::{
    secs, Migration, Model, Probe, Stage, RATE_PERIOD, SETUP_TIME, STOP_AFTER_LAST_SYNC,
    THROTTLE_TRIGGER_THRESHOLD,
};
use super::{MIB, PAGE_SIZE};
use crate::vfio::Step;

/// Bytes of the `RAM_SAVE_FLAG_EOS` marker that ends each RAM iteration.
const RAM_SAVE_FLAG_EOS_BYTES: u64 = 8;

impl Model {
    /// `migrate`: status `setup`; the destination accepts the stream when it listens.
    pub(super) fn begin_migration(&mut self, refused: Option<String>) {
        let now = self.now;
        self.mig = Some(Migration::new(
            now,
            refused.clone(),
            self.params.downtime_limit_ms,
        ));
        for d in &mut self.devices {
            d.precopy_reached = false;
            d.fault_done = false;
        }
        self.emit_status(MigrationStatus::Setup);
        if refused.is_none() {
            // The destination starts loading: `vfio_load_setup` moves its devices to
            // `resuming`.
            self.listening = false;
            self.dst_status = MigrationStatus::Active;
            let out = self.out.clone();
            devices::step_all(&mut self.devices, Side::Destination, Step::LoadSetup, now, &out);
        }
    }

    /// RAM's setup step: every page is dirty, dirty logging starts, sync 1.
    pub(super) fn setup_sync(&mut self) {
        let refused = self.mig.as_ref().and_then(|m| m.refused.clone());
        if let Some(error) = refused {
            self.fail(error);
            return;
        }
        self.ram.begin();
        let now = self.now;
        let remaining = self.ram.remaining_bytes();
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Setup { synced: true };
            m.dirty_sync_count = 1;
            m.period_start = now;
            m.dirty_bytes_last_sync = remaining;
        }
        if self.caps.events {
            self.emit(DriverEvent::Pass { pass: 1, at: now });
        }
    }

    /// VFIO's setup step (`vfio_save_setup`: a pre-copy device of a running VM goes
    /// `pre-copy`; with the VM stopped it stays `stop` until the device stage) for every
    /// device ready by now, then status `active`.
    pub(super) fn setup_done(&mut self) {
        let now = self.now;
        let out = self.out.clone();
        for d in self.devices.iter_mut().filter(|d| d.present) {
            if d.cfg
                .fault
                .saving_delay()
                .is_some_and(|delay| delay <= SETUP_TIME)
            {
                d.step(Side::Source, Step::SaveSetup, now, &out);
            }
        }
        if let Some(m) = &mut self.mig {
            m.stage = Stage::Active;
            m.setup_time_ms = Some(now.saturating_duration_since(m.started).as_millis() as u64);
            m.iter_start = now;
            m.window_bytes = 0;
        }
        self.set_status(MigrationStatus::Active);
    }

    /// The end of a 100 ms window (`migration_update_counters`), then an iteration.
    pub(super) fn iteration_end(&mut self) {
        let now = self.now;
        let limit_ms = self.params.downtime_limit_ms as f64;
        if let Some(m) = &mut self.mig {
            let spent = secs(now.saturating_duration_since(m.iter_start)).max(1e-9);
            m.bandwidth = m.window_bytes as f64 / spent;
            m.threshold = m.bandwidth * limit_ms / 1000.0;
            let transferred = m.ram_transferred + m.vfio_transferred;
            if m.dirty_pages_rate > 0 && transferred > 10_000 && m.bandwidth > 0.0 {
                m.expected_downtime_ms = (m.dirty_bytes_last_sync as f64 / (m.bandwidth / 1000.0)) as u64;
            }
            m.iter_start = now;
            m.window_bytes = 0;
            m.dry_run_done = self.ram.is_empty();
        }
        self.iteration_run();
    }

    /// One `migration_iteration_run`: when the estimated RAM left is below the threshold
    /// the bitmap is synced and the exact pending data (RAM and every device's stop-copy
    /// state) taken; QEMU completes when that is zero or below the threshold and
    /// `switchover-ack`, if on, was received. (Before the first window's measurement the
    /// threshold is 0 and a clean bitmap completes on `!pending_size` alone, as in QEMU.)
    pub(super) fn iteration_run(&mut self) {
        let Some(m) = &mut self.mig else {
            return;
        };
        if m.stopping_at.is_some() {
            return; // completing: no more iterations
        }
        // `ram_save_iterate` ends every call with an end-of-section marker, so even an
        // idle window carries a few bytes and the threshold never drops to zero.
        m.ram_transferred += RAM_SAVE_FLAG_EOS_BYTES;
        m.window_bytes += RAM_SAVE_FLAG_EOS_BYTES;
        let threshold = m.threshold;
        let mut pending = self.ram.remaining_bytes();
        if (pending as f64) < threshold {
            self.sync();
            pending = self.ram.remaining_bytes() + self.device_pending();
        }
        if (pending == 0 || (pending as f64) < threshold) && self.can_switchover() {
            let at = self.now + STOP_AFTER_LAST_SYNC;
            if let Some(m) = &mut self.mig {
                m.stopping_at = Some(at);
            }
        }
    }

    /// Every plugged device's stop-copy state (`vfio_state_pending_exact`).
    pub(super) fn device_pending(&self) -> u64 {
        self.devices
            .iter()
            .filter(|d| d.present)
            .map(|d| d.cfg.state_size)
            .sum()
    }

    /// `migration_can_switchover`: with `switchover-ack`, every pre-copy device must have
    /// sent its initial data (it reached pre-copy).
    pub(super) fn can_switchover(&self) -> bool {
        !self.caps.switchover_ack
            || self
                .devices
                .iter()
                .filter(|d| d.present && d.cfg.precopy)
                .all(|d| d.precopy_reached)
    }

    /// `migration_bitmap_sync`, with `migration_trigger_throttle` and the dirty-rate update
    /// at syncs at least a second apart, then `MIGRATION_PASS`.
    pub(super) fn sync(&mut self) {
        let new = self.ram.sync();
        let now = self.now;
        let remaining = self.ram.remaining_bytes();
        let Some(m) = &mut self.mig else {
            return;
        };
        m.dirty_sync_count += 1;
        m.period_new_pages += new;
        let elapsed = now.saturating_duration_since(m.period_start);
        let mut throttle_down = false;
        if elapsed > RATE_PERIOD {
            let transferred = m.ram_transferred + m.vfio_transferred;
            let xfer = transferred.saturating_sub(m.period_xfer_prev);
            let dirtied = m.period_new_pages * PAGE_SIZE;
            if self.caps.auto_converge && dirtied > xfer * THROTTLE_TRIGGER_THRESHOLD / 100 {
                m.dirty_rate_high_cnt += 1;
                if m.dirty_rate_high_cnt >= 2 {
                    m.dirty_rate_high_cnt = 0;
                    throttle_down = true;
                }
            }
            m.dirty_pages_rate = m.period_new_pages * 1000 / (elapsed.as_millis() as u64).max(1);
            m.period_start = now;
            m.period_new_pages = 0;
            m.period_xfer_prev = transferred;
        }
        m.dirty_bytes_last_sync = remaining;
        let pass = m.dirty_sync_count;
        if throttle_down {
            self.throttle_down();
        }
        if self.caps.events {
            self.emit(DriverEvent::Pass { pass, at: now });
        }
    }

    /// `mig_throttle_guest_down`: start at the initial percentage, then add the increment
    /// up to the maximum (`cpu_throttle_set` keeps it within 1..=99).
    pub(super) fn throttle_down(&mut self) {
        let p = self.params;
        let next = if self.throttle_pct == 0 {
            p.throttle_initial
        } else {
            self.throttle_pct
                .saturating_add(p.throttle_increment)
                .min(p.throttle_max)
        };
        self.throttle_pct = next.clamp(1, 99);
    }

    /// A `calc-dirty-rate` window closes: distinct bytes written over it, in MiB/s (the
    /// dirty bitmap reads nothing under TCG).
    pub(super) fn finish_probe(&mut self) {
        let Probe::Measuring {
            mode,
            start,
            end,
            written_at_start,
        } = self.probe.clone()
        else {
            return;
        };
        let window = secs(end.saturating_duration_since(start)).max(1e-9);
        let written = (self.ram.written() - written_at_start).max(0.0);
        let distinct = written.min(self.ram.wss_bytes() as f64);
        let mib_per_sec = match (mode, self.kvm) {
            (DirtyRateMode::DirtyBitmap, false) => 0,
            _ => (distinct / window / MIB as f64) as u64,
        };
        self.probe = Probe::Measured { mode, mib_per_sec };
    }
}
