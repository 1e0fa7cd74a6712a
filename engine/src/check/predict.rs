//! The prediction: from RAM, the measured dirty rate, the bandwidth, the declared
//! device state and the policy, how the migration will go: passes, total time, pause,
//! and which policy step fires when.
//!
//! The model follows QEMU's pre-copy: pass 1 sends every page that holds data (zero
//! pages cost a scan, not the link), each later pass sends what the guest dirtied
//! during the one before, and QEMU switches over at the first boundary where what is
//! left plus the devices' stop-copy state fits in `bandwidth × downtime-limit`. The
//! policy is applied as `policy.rs` applies it: a stalled pass is one where the guest
//! dirties at least as fast as the link sends, or `remaining` stops shrinking; after
//! `stall_passes` of them the next escalation step is taken. A throttle is modelled by
//! what `sizing.rs` aims it at (a dirty rate that lets what is left fit within two
//! passes), within the plan's ceilings, taking effect at once.

use std::time::Duration;

use plans::{Plan, Step, ThrottleMethod};
use serde::Serialize;

use crate::estimate::{self, Context};
use crate::sizing::{self, Measured};

/// How fast QEMU skips zero pages, bytes/s; measured on the rig as above.
const ZERO_SCAN_BYTES_PER_SEC: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;
/// How long a dirty limit takes to hold: QEMU adjusts each vCPU's throttle once per
/// `x-vcpu-dirty-limit-period` (1 s by default).
const DIRTY_LIMIT_LAG_MS: f64 = 1000.0;
/// Passes after which the model gives up (QEMU would go on; the policy never lets it).
const MAX_PASSES: u32 = 1000;

/// What the prediction starts from.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Guest RAM, bytes.
    pub ram_bytes: u64,
    /// Bytes of guest RAM that hold data (resident memory of the QEMU process when it
    /// could be read, else all of RAM).
    pub data_bytes: u64,
    /// The source's dirty rate, bytes/s.
    pub dirty_bytes_per_sec: u64,
    /// The link, bytes/s.
    pub bandwidth: u64,
    /// Declared device stop-copy state, bytes.
    pub device_bytes: u64,
}

/// How the migration is expected to end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Forecast {
    /// It converges by itself.
    Converges,
    /// It converges once the policy takes this step.
    ConvergesAfter {
        /// The step (`throttle`, `force-downtime`).
        step: String,
    },
    /// It cannot meet the plan's limits.
    CannotMeetLimits {
        /// The number that fails, in words.
        why: String,
    },
}

/// A policy step the prediction expects to fire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAt {
    /// The step.
    pub step: String,
    /// At the boundary of this pass.
    pub pass: u32,
    /// At this time after the start, ms.
    pub at_ms: u64,
}

/// The prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// How it ends.
    pub forecast: Forecast,
    /// Passes (dirty syncs) expected.
    pub passes: u32,
    /// Expected time to the switchover (the pause comes on top), or to the abort, ms.
    pub total_ms: u64,
    /// Expected guest pause, ms, when it converges.
    pub downtime_ms: Option<u64>,
    /// Policy steps expected to fire.
    pub steps: Vec<StepAt>,
}

/// Predicts the migration of `inputs` under `plan`.
pub fn predict(plan: &Plan, inputs: &Inputs) -> Prediction {
    let bandwidth = inputs.bandwidth.max(1) as f64;
    let sim = Sim {
        plan,
        bandwidth,
        dirty: inputs.dirty_bytes_per_sec as f64,
        throttle_lands: None,
        limit_ms: ms(plan.limits.downtime),
        t_ms: inputs.ram_bytes.saturating_sub(inputs.data_bytes) as f64 / ZERO_SCAN_BYTES_PER_SEC * 1000.0,
        steps: Vec::new(),
        next_step: 0,
    };
    sim.run(inputs.data_bytes as f64, inputs.device_bytes as f64)
}

struct Sim<'a> {
    plan: &'a Plan,
    bandwidth: f64,
    dirty: f64,
    /// The dirty rate a throttle will leave, and from when (ms): QEMU's dirty limit
    /// holds from its next period on.
    throttle_lands: Option<(f64, f64)>,
    limit_ms: f64,
    t_ms: f64,
    steps: Vec<StepAt>,
    next_step: usize,
}

impl Sim<'_> {
    fn run(mut self, data: f64, device: f64) -> Prediction {
        let mut send = data;
        let mut best = f64::MAX;
        let mut stalled = 0;
        let deadline = ms(self.plan.limits.deadline);
        for pass in 1..=MAX_PASSES {
            let pass_ms = send / self.bandwidth * 1000.0;
            let left = (self.dirtied(pass_ms) / 1000.0).min(data);
            self.t_ms += pass_ms;
            let pending_ms = (left + device) / self.bandwidth * 1000.0;
            if pending_ms <= self.limit_ms {
                return self.converged(pass, pending_ms);
            }
            if let Some(tail_ms) = self.tail_ms(left, device) {
                // QEMU re-syncs as soon as what is unsent falls under its threshold, so
                // a migration that gains on the guest ends sooner than whole passes say.
                self.t_ms += tail_ms;
                let pause_ms = self.limit_ms;
                return self.converged(pass + 1, pause_ms);
            }
            if self.t_ms > deadline {
                let why = format!(
                    "limits.deadline ({} s) passes before it converges",
                    deadline as u64 / 1000
                );
                return self.cannot(pass, why);
            }
            let stall = self.dirty >= self.bandwidth
                || device > self.threshold()
                || left > best * 0.9 && left > 2.0 * self.threshold();
            best = best.min(left);
            stalled = if stall { stalled + 1 } else { 0 };
            if stalled >= self.plan.convergence.stall_passes.max(1) {
                stalled = 0;
                best = f64::MAX;
                if let Err(why) = self.escalate(pass, left, device) {
                    return self.cannot(pass, why);
                }
            }
            send = left;
        }
        self.cannot(
            MAX_PASSES,
            "it does not converge within the passes the model follows".into(),
        )
    }

    /// Bytes × 1000 the guest dirties over the next `pass_ms`, with a throttle landing
    /// on the way taken into account (and made the rate from then on).
    fn dirtied(&mut self, pass_ms: f64) -> f64 {
        let end = self.t_ms + pass_ms;
        match self.throttle_lands {
            Some((at, rate)) if at < end => {
                let before = (at - self.t_ms).max(0.0);
                let out = self.dirty * before + rate * (pass_ms - before);
                self.dirty = rate;
                self.throttle_lands = None;
                out
            }
            _ => self.dirty * pass_ms,
        }
    }

    /// When the link gains on the guest by at least the policy's progress margin: the
    /// time until what is left (with what the guest dirties meanwhile) fits the
    /// threshold, as a flow, `(left - threshold) / (bandwidth - dirty rate)`.
    fn tail_ms(&self, left: f64, device: f64) -> Option<f64> {
        let room = self.threshold() - device;
        if room <= 0.0 || self.dirty > self.bandwidth * 0.9 {
            return None;
        }
        Some((left - room).max(0.0) / (self.bandwidth - self.dirty) * 1000.0)
    }

    fn threshold(&self) -> f64 {
        estimate::threshold(self.bandwidth as u64, self.limit_ms as u64) as f64
    }

    /// Takes the next escalation step; `Err` with the number that fails on abort.
    fn escalate(&mut self, pass: u32, left: f64, device: f64) -> Result<(), String> {
        let pending_ms = (left + device) / self.bandwidth * 1000.0;
        let policy = &self.plan.policy;
        let max_ms = ms(self.plan.limits.max_downtime);
        while let Some(step) = policy.escalation.get(self.next_step).copied() {
            self.next_step += 1;
            match step {
                Step::Throttle => {
                    let lag = match self.plan.policy.throttle {
                        ThrottleMethod::DirtyLimit => DIRTY_LIMIT_LAG_MS,
                        ThrottleMethod::AutoConverge => 0.0,
                    };
                    self.throttle_lands = Some((self.t_ms + lag, self.throttled(self.dirty, left, device)));
                    self.record(step, pass);
                    return Ok(());
                }
                Step::ForceDowntime if pending_ms * 1.25 <= max_ms => {
                    self.limit_ms = (pending_ms * 1.25).max(self.limit_ms + 1.0);
                    self.record(step, pass);
                    return Ok(());
                }
                Step::ForceDowntime => continue,
                Step::Abort => break,
            }
        }
        let device_ms = device / self.bandwidth * 1000.0;
        if device_ms > max_ms {
            return Err(format!(
                "the devices' stop-copy state ({} MiB) takes {} ms at {}/s, more than limits.max_downtime ({} ms)",
                device as u64 >> 20,
                device_ms as u64,
                mib(self.bandwidth as u64),
                max_ms as u64
            ));
        }
        Err(format!(
            "dirty rate {}/s is not below bandwidth {}/s, and the pause it would need ({} ms) is more than limits.max_downtime ({} ms)",
            mib(self.dirty as u64),
            mib(self.bandwidth as u64),
            (pending_ms * 1.25) as u64,
            max_ms as u64
        ))
    }

    /// The dirty rate a throttle leaves: what `sizing.rs` aims for with `left` still to
    /// send, within the plan's ceiling (`throttle_max`) or floor (`dirty_limit`).
    fn throttled(&self, dirty: f64, left: f64, device: f64) -> f64 {
        let policy = &self.plan.policy;
        let measured = Measured {
            dirty_rate: dirty as u64,
            vcpu_rates: &[],
            bandwidth: self.bandwidth as u64,
            remaining: left as u64,
            cpu_throttle: 0,
            downtime_ms: self.limit_ms as u64,
        };
        let ctx = Context {
            device_bytes: device as u64,
            fallback_bandwidth: Some(self.bandwidth as u64),
        };
        let (target, _) = sizing::aim(&measured, ctx);
        let target = target as f64;
        match policy.throttle {
            ThrottleMethod::AutoConverge => {
                let most = f64::from(policy.throttle_max) / 100.0;
                dirty.min(target.max(dirty * (1.0 - most)))
            }
            ThrottleMethod::DirtyLimit => dirty.min(target.max(policy.dirty_limit.bytes_per_sec() as f64)),
        }
    }

    fn record(&mut self, step: Step, pass: u32) {
        self.steps.push(StepAt {
            step: step.name().to_string(),
            pass,
            at_ms: self.t_ms as u64,
        });
    }

    /// Converged with the last `pause_ms` of data to send while the guest is paused, at
    /// the capped bandwidth: an upper bound, as QEMU sends the last part without the
    /// cap. The total is to the switchover; the pause comes on top of it.
    fn converged(self, passes: u32, pause_ms: f64) -> Prediction {
        let forecast = match self.steps.last() {
            None => Forecast::Converges,
            Some(last) => Forecast::ConvergesAfter {
                step: last.step.clone(),
            },
        };
        Prediction {
            forecast,
            passes,
            total_ms: self.t_ms as u64,
            downtime_ms: Some(pause_ms.ceil() as u64),
            steps: self.steps,
        }
    }

    fn cannot(self, passes: u32, why: String) -> Prediction {
        Prediction {
            forecast: Forecast::CannotMeetLimits { why },
            passes,
            total_ms: self.t_ms as u64,
            downtime_ms: None,
            steps: self.steps,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn plan(policy: &str) -> Plan {
        let text = format!(
            "[vm]\nname = \"t\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n[limits]\ndowntime = \"300ms\"\nmax_downtime = \"2s\"\nmax_bandwidth = \"128MiB/s\"\n[policy]\n{policy}"
        );
        plans::load("plan.toml", &text).expect("a valid plan")
    }

    fn inputs(data_mib: u64, dirty_mib: u64, device_mib: u64) -> Inputs {
        Inputs {
            ram_bytes: 1024 * MIB,
            data_bytes: data_mib * MIB,
            dirty_bytes_per_sec: dirty_mib * MIB,
            bandwidth: 128 * MIB,
            device_bytes: device_mib * MIB,
        }
    }

    #[test]
    fn an_idle_guest_converges_after_one_pass_over_its_data() {
        let p = predict(&plan("escalation = [\"abort\"]"), &inputs(256, 0, 0));
        assert_eq!(p.forecast, Forecast::Converges);
        assert_eq!(p.passes, 1);
        // 256 MiB at 128 MiB/s, plus setup and the zero scan of 768 MiB.
        assert!((2000..2500).contains(&p.total_ms), "{p:?}");
    }

    #[test]
    fn dirtying_slower_than_the_link_converges_in_a_few_passes() {
        let p = predict(&plan("escalation = [\"abort\"]"), &inputs(256, 50, 0));
        assert_eq!(p.forecast, Forecast::Converges);
        assert!(p.passes > 1 && p.passes < 10, "{p:?}");
        assert!(p.downtime_ms.is_some_and(|d| d <= 300));
    }

    #[test]
    fn dirtying_faster_than_the_link_under_abort_cannot_meet_the_limits() {
        let p = predict(&plan("escalation = [\"abort\"]"), &inputs(256, 200, 0));
        let Forecast::CannotMeetLimits { why } = &p.forecast else {
            panic!("{p:?}")
        };
        assert!(why.contains("200MiB/s is not below bandwidth 128MiB/s"), "{why}");
    }

    #[test]
    fn a_throttle_makes_a_fast_dirtier_converge_after_that_step() {
        let p = predict(
            &plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"auto-converge\"\nthrottle_max = 90"),
            &inputs(256, 200, 0),
        );
        assert_eq!(
            p.forecast,
            Forecast::ConvergesAfter {
                step: "throttle".into()
            }
        );
        assert_eq!(p.steps.len(), 1);
    }

    #[test]
    fn device_state_larger_than_the_pause_ceiling_cannot_meet_the_limits_whatever_the_guest_does() {
        // 512 MiB at 128 MiB/s is 4 s of pause; the plan allows 2 s.
        let p = predict(
            &plan("escalation = [\"force-downtime\", \"abort\"]"),
            &inputs(64, 0, 512),
        );
        let Forecast::CannotMeetLimits { why } = &p.forecast else {
            panic!("{p:?}")
        };
        assert!(why.contains("512 MiB") && why.contains("4000 ms"), "{why}");
    }

    #[test]
    fn forcing_the_downtime_finishes_when_the_pause_fits_the_ceiling() {
        let p = predict(
            &plan("escalation = [\"force-downtime\", \"abort\"]"),
            &inputs(128, 200, 0),
        );
        assert_eq!(
            p.forecast,
            Forecast::ConvergesAfter {
                step: "force-downtime".into()
            }
        );
        assert!(p.downtime_ms.is_some_and(|d| d > 300 && d <= 2000), "{p:?}");
    }
}
