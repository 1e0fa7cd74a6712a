//! The one downtime estimate: how long the guest would be paused if QEMU switched over
//! now, and how much data fits into a given pause.
//!
//! QEMU switches over when what is left (RAM plus the devices' stop-copy state) fits in
//! `bandwidth × downtime-limit`. QMP reports RAM left but not the device state, so the
//! plan's declared device state is added here. Progress bars, the policy's stall test,
//! the downtime forcing asks for and the check at `pre-switchover` all use these
//! functions, so they cannot disagree.

use plans::Plan;

/// What the estimate knows beyond a single reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Declared VFIO device state, bytes.
    pub device_bytes: u64,
    /// Bandwidth to assume when QEMU has not measured one yet (the plan's cap), bytes/s.
    pub fallback_bandwidth: Option<u64>,
}

impl Context {
    /// The context a plan gives.
    pub fn of(plan: &Plan) -> Self {
        Context {
            device_bytes: plan.device_state_bytes(),
            fallback_bandwidth: plan.limits.max_bandwidth.map(|r| r.bytes_per_sec()),
        }
    }

    /// The bandwidth to reckon with: QEMU's measurement, else the plan's cap; `None`
    /// when neither is known.
    pub fn bandwidth(&self, measured: u64) -> Option<u64> {
        Some(measured)
            .filter(|b| *b > 0)
            .or(self.fallback_bandwidth)
            .filter(|b| *b > 0)
    }

    /// What must still cross while the guest is paused: RAM left plus device state.
    pub fn pending(&self, remaining: u64) -> u64 {
        remaining.saturating_add(self.device_bytes)
    }

    /// The pause (ms) switching over now would cause, with `remaining` RAM left at the
    /// `measured` bandwidth.
    pub fn pause_ms(&self, remaining: u64, measured: u64) -> Option<u64> {
        let bandwidth = self.bandwidth(measured)?;
        Some(transfer_ms(self.pending(remaining), bandwidth))
    }
}

/// Milliseconds to send `bytes` at `bandwidth` bytes/s (which must not be 0).
pub fn transfer_ms(bytes: u64, bandwidth: u64) -> u64 {
    (bytes as f64 / bandwidth as f64 * 1000.0) as u64
}

/// Bytes QEMU can send within `downtime_ms` at `bandwidth`: its switchover threshold.
pub fn threshold(bandwidth: u64, downtime_ms: u64) -> u64 {
    (bandwidth as f64 * downtime_ms as f64 / 1000.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn pause_counts_device_state_and_prefers_the_measured_bandwidth() {
        let ctx = Context {
            device_bytes: 64 * MIB,
            fallback_bandwidth: Some(64 * MIB),
        };
        assert_eq!(ctx.pause_ms(64 * MIB, 128 * MIB), Some(1000));
        assert_eq!(ctx.pause_ms(64 * MIB, 0), Some(2000), "the plan's cap stands in");
    }

    #[test]
    fn no_bandwidth_means_no_estimate() {
        let ctx = Context {
            device_bytes: 0,
            fallback_bandwidth: None,
        };
        assert_eq!(ctx.pause_ms(MIB, 0), None);
    }

    #[test]
    fn threshold_is_bandwidth_times_downtime() {
        assert_eq!(threshold(128 * MIB, 300), 128 * MIB * 3 / 10);
    }
}
