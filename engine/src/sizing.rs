//! Sizing a throttle: from the measured dirty rate, the bandwidth and what QEMU may
//! leave for the switchover, the dirty rate the guest must fall to, and the throttle
//! that should get it there, set in one step instead of ramped.
//!
//! **The aim.** A pass sends what is left at bandwidth `B` while the guest dirties at
//! `D`, so each pass leaves about `D/B` of the one before. For `R` left now to shrink
//! below QEMU's switchover budget (`B × downtime-limit` less the declared device state)
//! within [`PASSES_TO_FIT`] passes, `R·(D/B)^k ≤ budget`, that is
//! `D ≤ B·(budget/R)^(1/k)`. The aim is never above [`COMFORT`] × `B`: measurements
//! scatter (the dirty ring reads up to a fifth high, QEMU's dirty limit holds a rate
//! only within 25 MB/s), and a rate near the bandwidth shrinks nothing.
//!
//! **Auto-converge** takes a share of the vCPUs' time. The first throttle assumes the
//! dirty rate scales with the time left to the vCPUs: `p = 1 − (1 − p_now)·aim/D`.
//! A guest that idles between bursts of writes is slowed less than that, so the check at
//! the next boundary measures what the throttle did and the correction applies the same
//! formula to the rate measured under it, at least `throttle_increment` higher.
//!
//! **A dirty limit** is per vCPU. With per-vCPU rates (dirty-ring measurements) the
//! limit is the level at which the vCPUs' capped rates add up to the aim (vCPUs that
//! dirty less keep their share); without them the guest counts as one vCPU. A
//! correction scales the limit by aim over the rate measured under it.
//!
//! Everything here is pure arithmetic on measurements; the words are in `words.rs`.

use plans::{Plan, ThrottleMethod};
use serde::Serialize;

use crate::driver::Throttle;
use crate::estimate::{threshold, Context};

/// The aim lets what is left fit QEMU's switchover budget within this many passes.
pub const PASSES_TO_FIT: u32 = 2;
/// The aim never exceeds this share of the bandwidth.
pub const COMFORT: f64 = 0.6;
/// A throttle is corrected when the rate measured under it exceeds the aim by more than
/// this factor (measurement scatter stays below it).
pub const TOLERANCE: f64 = 1.25;

const MIB: u64 = 1024 * 1024;

/// The throttle a sizing chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    /// Auto-converge's throttle, percent.
    Percent {
        /// Percent of vCPU time taken.
        percent: u8,
    },
    /// A per-vCPU dirty limit, MiB/s.
    Limit {
        /// MiB/s per vCPU.
        mib_per_sec: u64,
    },
}

/// Where the dirty rate aimed for comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Aim {
    /// What lets `remaining` shrink below `budget` within [`PASSES_TO_FIT`] passes.
    Fit {
        /// RAM left at the boundary, bytes.
        remaining: u64,
        /// `bandwidth × downtime-limit` less the device state, bytes.
        budget: u64,
        /// Bandwidth, bytes/s.
        bandwidth: u64,
        /// The downtime limit, ms.
        downtime_ms: u64,
        /// Declared device state, bytes.
        device_bytes: u64,
    },
    /// [`COMFORT`] × the bandwidth: the fit alone would allow more.
    UnderBandwidth {
        /// Bandwidth, bytes/s.
        bandwidth: u64,
    },
    /// No bandwidth known yet: the plan's own values.
    NoBandwidth,
}

/// A plan key that overrode the computed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "key", rename_all = "snake_case")]
pub enum Bound {
    /// `policy.throttle_max`, percent.
    ThrottleMax {
        /// The ceiling.
        percent: u8,
    },
    /// `policy.throttle_initial`, percent: the least first throttle.
    ThrottleInitial {
        /// The floor.
        percent: u8,
    },
    /// `policy.throttle_increment`: the least a correction adds.
    ThrottleIncrement {
        /// The step.
        percent: u8,
    },
    /// `policy.dirty_limit`: the lowest per-vCPU limit, MiB/s.
    DirtyLimitFloor {
        /// The floor.
        mib_per_sec: u64,
    },
}

/// What a throttle was computed from, for the action's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// The throttle chosen.
    pub setting: Setting,
    /// The dirty rate measured, bytes/s.
    pub dirty_rate: u64,
    /// Auto-converge's throttle while it was measured, percent (0: none).
    pub measured_at_percent: u64,
    /// The dirty limit in force while it was measured, MiB/s.
    pub measured_under_limit: Option<u64>,
    /// The dirty rate aimed for, bytes/s.
    pub target_rate: u64,
    /// Where that aim comes from.
    pub aim: Aim,
    /// The plan key that overrode the computed value, if one did.
    pub bound: Option<Bound>,
}

/// What was measured at the boundary the throttle is sized at.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// Dirty rate, bytes/s.
    pub dirty_rate: u64,
    /// Per-vCPU dirty rates, bytes/s (empty when unknown).
    pub vcpu_rates: &'a [u64],
    /// Bandwidth QEMU measured, bytes/s (0: not yet).
    pub bandwidth: u64,
    /// RAM left, bytes (the peak of the recent boundaries).
    pub remaining: u64,
    /// Auto-converge's throttle now, percent.
    pub cpu_throttle: u64,
    /// The downtime limit in force, ms.
    pub downtime_ms: u64,
}

/// The dirty rate to aim for, and why.
pub fn aim(m: &Measured<'_>, ctx: Context) -> (u64, Aim) {
    let Some(bandwidth) = ctx.bandwidth(m.bandwidth) else {
        return (0, Aim::NoBandwidth);
    };
    let comfortable = (bandwidth as f64 * COMFORT) as u64;
    let budget = threshold(bandwidth, m.downtime_ms)
        .saturating_sub(ctx.device_bytes)
        .max(1);
    let remaining = m.remaining.max(1);
    let fit = bandwidth as f64 * (budget as f64 / remaining as f64).powf(1.0 / f64::from(PASSES_TO_FIT));
    if fit as u64 >= comfortable {
        return (comfortable, Aim::UnderBandwidth { bandwidth });
    }
    let aim = Aim::Fit {
        remaining: m.remaining,
        budget,
        bandwidth,
        downtime_ms: m.downtime_ms,
        device_bytes: ctx.device_bytes,
    };
    ((fit as u64).max(1), aim)
}

/// The first throttle of the `throttle` step.
pub fn first(plan: &Plan, m: &Measured<'_>, ctx: Context) -> (Throttle, Sizing) {
    let (target_rate, aim) = aim(m, ctx);
    let p = &plan.policy;
    let (setting, bound) = match (p.throttle, aim) {
        (ThrottleMethod::AutoConverge, Aim::NoBandwidth) => (
            Setting::Percent {
                percent: p.throttle_initial,
            },
            Some(Bound::ThrottleInitial {
                percent: p.throttle_initial,
            }),
        ),
        (ThrottleMethod::AutoConverge, _) => {
            let computed = percent_for(m.cpu_throttle, m.dirty_rate, target_rate);
            let (percent, bound) = within(computed, p.throttle_initial, p.throttle_max, false);
            (Setting::Percent { percent }, bound)
        }
        (ThrottleMethod::DirtyLimit, Aim::NoBandwidth) => floor_limit(plan, 0),
        (ThrottleMethod::DirtyLimit, _) => floor_limit(plan, water_level(m.vcpu_rates, target_rate)),
    };
    let sizing = Sizing {
        setting,
        dirty_rate: m.dirty_rate,
        measured_at_percent: m.cpu_throttle,
        measured_under_limit: None,
        target_rate,
        aim,
        bound,
    };
    (throttle_for(setting, m.cpu_throttle), sizing)
}

/// The correction of a throttle whose first measurement shows the rate above the aim,
/// or `None` when there is nothing to correct (the rate is near the aim, or a plan
/// bound already holds the throttle where a correction would take it).
pub fn correct(
    plan: &Plan,
    applied: &Setting,
    target_rate: u64,
    aim: Aim,
    m: &Measured<'_>,
) -> Option<(Throttle, Sizing)> {
    if (m.dirty_rate as f64) <= target_rate as f64 * TOLERANCE || target_rate == 0 {
        return None;
    }
    let p = &plan.policy;
    let (setting, bound, under_limit) = match *applied {
        Setting::Percent { percent } => {
            let now = m.cpu_throttle.max(u64::from(percent));
            if now >= u64::from(p.throttle_max) {
                return None;
            }
            let computed = percent_for(now, m.dirty_rate, target_rate);
            let least = (now + u64::from(p.throttle_increment)).min(99) as u8;
            let (percent, bound) = within(computed, least, p.throttle_max, true);
            let bound = bound.map(|b| match b {
                Bound::ThrottleInitial { .. } => Bound::ThrottleIncrement {
                    percent: p.throttle_increment,
                },
                other => other,
            });
            (Setting::Percent { percent }, bound, None)
        }
        Setting::Limit { mib_per_sec } => {
            let scaled = (mib_per_sec * MIB) as f64 * target_rate as f64 / m.dirty_rate as f64;
            let (setting, bound) = floor_limit(plan, scaled as u64);
            if setting == *applied {
                return None;
            }
            (setting, bound, Some(mib_per_sec))
        }
    };
    if setting == *applied {
        return None;
    }
    let sizing = Sizing {
        setting,
        dirty_rate: m.dirty_rate,
        measured_at_percent: m.cpu_throttle,
        measured_under_limit: under_limit,
        target_rate,
        aim,
        bound,
    };
    Some((throttle_for(setting, m.cpu_throttle), sizing))
}

/// `1 − (1 − now)·target/dirty` in whole percent, rounded up.
fn percent_for(now: u64, dirty_rate: u64, target_rate: u64) -> u64 {
    if dirty_rate == 0 {
        return now;
    }
    let left = (100.0 - now.min(99) as f64) / 100.0;
    let keep = left * (target_rate as f64 / dirty_rate as f64).min(1.0);
    ((1.0 - keep) * 100.0).ceil() as u64
}

/// `computed` held between `least` and `most`, and which bound held it.
fn within(computed: u64, least: u8, most: u8, correcting: bool) -> (u8, Option<Bound>) {
    let least = least.min(most);
    if computed > u64::from(most) {
        return (most, Some(Bound::ThrottleMax { percent: most }));
    }
    if computed < u64::from(least) {
        let bound = match correcting {
            true => Bound::ThrottleIncrement { percent: least },
            false => Bound::ThrottleInitial { percent: least },
        };
        return (least, Some(bound));
    }
    (computed as u8, None)
}

/// A per-vCPU limit (bytes/s) in whole MiB/s, raised to the plan's floor.
fn floor_limit(plan: &Plan, bytes_per_sec: u64) -> (Setting, Option<Bound>) {
    let floor = (plan.policy.dirty_limit.mib_per_sec().round() as u64).max(1);
    let mib = bytes_per_sec / MIB;
    match mib < floor {
        true => (
            Setting::Limit { mib_per_sec: floor },
            Some(Bound::DirtyLimitFloor { mib_per_sec: floor }),
        ),
        false => (Setting::Limit { mib_per_sec: mib }, None),
    }
}

/// The per-vCPU limit at which the vCPUs' capped rates add up to `target`: vCPUs that
/// dirty less than the limit keep their rate. Without per-vCPU rates the guest counts
/// as one vCPU.
pub fn water_level(vcpu_rates: &[u64], target: u64) -> u64 {
    if vcpu_rates.is_empty() {
        return target;
    }
    let mut rates = vcpu_rates.to_vec();
    rates.sort_unstable();
    let mut below = 0u64;
    for (i, rate) in rates.iter().enumerate() {
        let rest = (rates.len() - i) as u64;
        if below + rate * rest >= target {
            return (target.saturating_sub(below)) / rest;
        }
        below += rate;
    }
    // Together they already dirty less than the aim: hold each at the highest rate.
    rates.last().copied().unwrap_or(target).max(1)
}

/// The driver's request for a setting. Auto-converge cannot be told a percentage
/// directly: QEMU applies `cpu-throttle-initial` when it first throttles and adds
/// `cpu-throttle-increment` at each later trigger, both capped at `max-cpu-throttle`
/// (`mig_throttle_guest_down`). Initial at the percentage, the increment that takes the
/// current throttle there, and the maximum at it make the next trigger land on it from
/// either state, and hold it there.
fn throttle_for(setting: Setting, now: u64) -> Throttle {
    match setting {
        Setting::Percent { percent } => Throttle::AutoConverge {
            initial: percent,
            increment: (u64::from(percent).saturating_sub(now)).clamp(1, 100) as u8,
            max: percent,
        },
        Setting::Limit { mib_per_sec } => Throttle::DirtyLimit { mib_per_sec },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_water_level_leaves_quiet_vcpus_their_rate() {
        assert_eq!(water_level(&[10 * MIB, 100 * MIB, 100 * MIB], 70 * MIB), 30 * MIB);
        assert_eq!(water_level(&[200 * MIB], 60 * MIB), 60 * MIB);
        assert_eq!(water_level(&[], 60 * MIB), 60 * MIB);
    }

    #[test]
    fn a_throttle_removes_the_share_of_vcpu_time_the_aim_needs() {
        // 200 MiB/s at 1% to 50 MiB/s: keep 0.99 × 0.25 of the time.
        assert_eq!(percent_for(1, 200 * MIB, 50 * MIB), 76);
        assert_eq!(percent_for(0, 100 * MIB, 100 * MIB), 0);
    }

    #[test]
    fn the_jump_lands_on_the_percentage_from_any_throttle() {
        let t = throttle_for(Setting::Percent { percent: 76 }, 1);
        assert_eq!(
            t,
            Throttle::AutoConverge {
                initial: 76,
                increment: 75,
                max: 76
            }
        );
        let lower = throttle_for(Setting::Percent { percent: 40 }, 60);
        assert!(matches!(
            lower,
            Throttle::AutoConverge {
                increment: 1,
                max: 40,
                ..
            }
        ));
    }
}
