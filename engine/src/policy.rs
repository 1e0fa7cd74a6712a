//! The convergence policy: a pure function from what was measured at pass boundaries to
//! a decision. Time arrives as data, so every rule is tested without sleeping.
//!
//! Progress is judged only at dirty-sync boundaries. `remaining` falls within a pass and
//! jumps back at each sync (a saw tooth); comparing two samples from different points of
//! a pass is how peers' progress timeouts misfire. At a boundary, `remaining` is exactly
//! what QEMU's switchover test compares with `bandwidth × downtime-limit`.
//!
//! A pass is **stalled** when, at its boundary:
//! - the device state alone exceeds `bandwidth × downtime-limit` (it can never fit), or
//! - the guest dirties memory at least as fast as the link sends it, or
//! - `remaining` did not fall at least 10% below the best boundary since the last action,
//!   unless it is already within twice `bandwidth × downtime-limit` (boundaries scatter
//!   around the threshold before one fits).
//!
//! After `stall_passes` stalled passes in a row the policy takes the next escalation step.
//! Each step gets the same number of passes to work before the next one.

use std::time::Duration;

use plans::{ForceMethod, Plan, Step, ThrottleMethod};
use serde::Serialize;

use crate::driver::Throttle;
use crate::estimate::threshold;
pub use crate::estimate::Context;

/// Safety margin on the computed downtime: the last passes may not show the peak.
const DOWNTIME_MARGIN: f64 = 1.25;
/// A pass makes progress when `remaining` falls at least this much below the best.
const PROGRESS_FRACTION: f64 = 0.9;
/// Remaining data within this multiple of `bandwidth × downtime-limit` is never called
/// a stall for not shrinking: boundaries scatter around the threshold before one fits.
const NEAR_FACTOR: u64 = 2;

/// What was measured at one dirty-sync boundary.
#[derive(Debug, Clone, Serialize)]
pub struct PassRecord {
    /// The dirty-sync count reached.
    pub pass: u64,
    /// Time since the migration started.
    #[serde(serialize_with = "crate::report::ms")]
    pub elapsed: Duration,
    /// RAM still to send right after the sync (what the switchover test compares).
    pub remaining: u64,
    /// Bytes sent so far.
    pub transferred: u64,
    /// Dirty rate in bytes/s (kernel or statistics, as the plan says).
    pub dirty_rate: u64,
    /// Throughput in bytes/s.
    pub bandwidth: u64,
    /// Auto-converge's throttle at the boundary, percent (0 when not throttling).
    pub cpu_throttle: u64,
}

/// Why a pass counts as not converging.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StallReason {
    /// The guest dirties memory at least as fast as the link carries it.
    DirtyRateAboveBandwidth {
        /// Dirty rate, bytes/s.
        dirty_rate: u64,
        /// Bandwidth, bytes/s.
        bandwidth: u64,
    },
    /// Remaining data did not shrink across passes.
    NoProgress {
        /// Remaining at this boundary.
        remaining: u64,
        /// Best remaining at earlier boundaries.
        best: u64,
    },
    /// The VFIO device state alone needs more than the downtime limit allows.
    DeviceStateTooLarge {
        /// Declared device state.
        device_bytes: u64,
        /// `bandwidth × downtime-limit`.
        threshold: u64,
    },
}

/// Why the policy ended the migration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AbortReason {
    /// The escalation reached `abort` after stalled passes.
    NotConverging {
        /// The last stall's reason.
        stall: StallReason,
    },
    /// Forcing would need more downtime than the plan allows.
    NeedsMoreDowntime {
        /// Downtime the remaining data needs, ms.
        needed_ms: u64,
        /// The plan's ceiling, ms.
        max_ms: u64,
    },
    /// Every step was taken and the migration still does not converge.
    EscalationExhausted {
        /// The last stall's reason.
        stall: StallReason,
    },
    /// `limits.deadline` passed.
    Deadline {
        /// The deadline, ms.
        deadline_ms: u64,
    },
    /// At `pre-switchover`: continuing would pause the guest longer than the plan allows
    /// (QEMU's switchover test counts only the device state devices report).
    PauseTooLong {
        /// The pause continuing would cause, ms.
        pause_ms: u64,
        /// RAM left plus declared device state, bytes.
        pending_bytes: u64,
        /// The bandwidth the estimate used, bytes/s.
        bandwidth: u64,
        /// The plan's ceiling, ms.
        max_ms: u64,
    },
}

/// What made the policy act.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// Passes stalled; the last one for this reason.
    Stall(StallReason),
    /// `limits.deadline` passed.
    Deadline {
        /// The deadline, ms.
        deadline_ms: u64,
    },
}

/// An escalation step passed over on the way to the one taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The step.
    pub step: Step,
    /// The downtime it would have needed, ms.
    pub needed_ms: u64,
    /// The plan's ceiling, ms.
    pub max_ms: u64,
}

/// Something the policy asks the engine to do to the running migration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Throttle the guest's vCPUs.
    Throttle {
        /// How.
        throttle: Throttle,
    },
    /// Raise `downtime-limit` so QEMU can switch over.
    RaiseDowntime {
        /// New limit, ms.
        to_ms: u64,
    },
    /// Stop the source guest so the rest copies while it is paused.
    StopGuest,
}

/// The policy's answer for one boundary or tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep going.
    Continue,
    /// Take escalation step `step` (an index into the plan's escalation).
    Escalate {
        /// Index of the step taken.
        step: usize,
        /// What to do.
        action: Action,
        /// Why.
        trigger: Trigger,
        /// Steps passed over on the way (e.g. forcing that would exceed the ceiling).
        skipped: Vec<Skipped>,
    },
    /// Cancel the migration.
    Abort(AbortReason),
}

/// Where the escalation stands; owned by the convergence loop, read by the policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// Index of the next escalation step.
    pub next_step: usize,
    /// Pass records before this index predate the last action.
    pub since: usize,
    /// Current downtime limit, ms.
    pub downtime_limit_ms: u64,
    /// The downtime limit has been raised by forcing.
    pub forced: bool,
}

/// Judges one boundary against the earlier ones since the last action.
pub fn assess(
    current: &PassRecord,
    earlier: &[PassRecord],
    downtime_limit_ms: u64,
    ctx: Context,
) -> Result<(), StallReason> {
    let pending = ctx.pending(current.remaining);
    let mut near = false;
    if let Some(bandwidth) = ctx.bandwidth(current.bandwidth) {
        let threshold = threshold(bandwidth, downtime_limit_ms);
        if ctx.device_bytes > threshold {
            return Err(StallReason::DeviceStateTooLarge {
                device_bytes: ctx.device_bytes,
                threshold,
            });
        }
        if pending <= threshold {
            return Ok(());
        }
        if current.dirty_rate >= bandwidth {
            return Err(StallReason::DirtyRateAboveBandwidth {
                dirty_rate: current.dirty_rate,
                bandwidth,
            });
        }
        // Within twice the threshold the boundaries scatter around it and one of the
        // next will fit: that is convergence with noise, not a stall.
        near = pending <= threshold.saturating_mul(NEAR_FACTOR);
    }
    if let Some(best) = earlier.iter().map(|r| r.remaining).min().filter(|_| !near) {
        if current.remaining as f64 > best as f64 * PROGRESS_FRACTION {
            return Err(StallReason::NoProgress {
                remaining: current.remaining,
                best,
            });
        }
    }
    Ok(())
}

/// The downtime (ms) that lets QEMU switch over with what is left: the peak remaining of
/// the recent boundaries plus the device state, at the measured bandwidth, with a margin.
pub fn needed_downtime_ms(history: &[PassRecord], ctx: Context) -> Option<u64> {
    let recent = &history[history.len().saturating_sub(3)..];
    let peak = recent.iter().map(|r| r.remaining).max()?;
    let measured = recent.iter().rev().map(|r| r.bandwidth).find(|b| *b > 0);
    let pause = ctx.pause_ms(peak, measured.unwrap_or(0))?;
    Some((pause as f64 * DOWNTIME_MARGIN).ceil() as u64)
}

/// At `pre-switchover`: refuses to continue when the pause that would cause exceeds the
/// plan's ceiling. QEMU's switchover test counts only the device state the devices
/// report; a plan that declares more is not continued into a longer pause than it allows.
pub fn check_switchover_pause(
    plan: &Plan,
    remaining: u64,
    bandwidth: u64,
    ctx: Context,
) -> Result<(), AbortReason> {
    let Some(pause_ms) = ctx.pause_ms(remaining, bandwidth) else {
        return Ok(());
    };
    let max_ms = plan.limits.max_downtime.as_millis() as u64;
    if pause_ms <= max_ms {
        return Ok(());
    }
    Err(AbortReason::PauseTooLong {
        pause_ms,
        pending_bytes: ctx.pending(remaining),
        bandwidth: ctx.bandwidth(bandwidth).unwrap_or(0),
        max_ms,
    })
}

/// Decides at a pass boundary. `history` holds every boundary so far, the newest last.
pub fn decide(plan: &Plan, history: &[PassRecord], state: &PolicyState, ctx: Context) -> Decision {
    let window = &history[state.since.min(history.len())..];
    let Some(stall) = stalled_run(
        window,
        state.downtime_limit_ms,
        ctx,
        plan.convergence.stall_passes,
    ) else {
        return Decision::Continue;
    };
    if auto_converge_ramping(plan, history, state) {
        // QEMU raises the throttle one increment at a time, at most every other sync: the
        // step is still being taken, not exhausted. The deadline stays the backstop.
        return Decision::Continue;
    }
    escalate(plan, history, state, ctx, stall)
}

/// The last stall's reason when the newest `needed` boundaries in `window` all stalled.
fn stalled_run(window: &[PassRecord], downtime_ms: u64, ctx: Context, needed: u32) -> Option<StallReason> {
    let needed = needed.max(1) as usize;
    if window.len() < needed {
        return None;
    }
    let mut last = None;
    for i in window.len() - needed..window.len() {
        match assess(&window[i], &window[..i], downtime_ms, ctx) {
            Ok(()) => return None,
            Err(reason) => last = Some(reason),
        }
    }
    last
}

/// Whether the last step taken was auto-converge and QEMU is throttling but still below
/// the plan's maximum. A throttle that never engaged (0%) does not hold the escalation.
fn auto_converge_ramping(plan: &Plan, history: &[PassRecord], state: &PolicyState) -> bool {
    let last_taken = state
        .next_step
        .checked_sub(1)
        .and_then(|i| plan.policy.escalation.get(i));
    let throttle = history.last().map_or(0, |r| r.cpu_throttle);
    last_taken == Some(&Step::Throttle)
        && plan.policy.throttle == ThrottleMethod::AutoConverge
        && (1..u64::from(plan.policy.throttle_max)).contains(&throttle)
}

fn escalate(
    plan: &Plan,
    history: &[PassRecord],
    state: &PolicyState,
    ctx: Context,
    stall: StallReason,
) -> Decision {
    let mut skipped = Vec::new();
    let max_ms = plan.limits.max_downtime.as_millis() as u64;
    for (index, step) in plan.policy.escalation.iter().enumerate().skip(state.next_step) {
        match step {
            Step::Throttle => {
                return Decision::Escalate {
                    step: index,
                    action: Action::Throttle {
                        throttle: throttle_of(plan),
                    },
                    trigger: Trigger::Stall(stall),
                    skipped,
                }
            }
            Step::ForceDowntime => match force(plan, history, state, ctx) {
                Ok(action) => {
                    return Decision::Escalate {
                        step: index,
                        action,
                        trigger: Trigger::Stall(stall),
                        skipped,
                    }
                }
                Err(needed_ms) => skipped.push(Skipped {
                    step: Step::ForceDowntime,
                    needed_ms,
                    max_ms,
                }),
            },
            Step::Abort => {
                return Decision::Abort(match skipped.is_empty() {
                    true => AbortReason::NotConverging { stall },
                    false => AbortReason::NeedsMoreDowntime {
                        needed_ms: needed_downtime_ms(history, ctx).unwrap_or(u64::MAX),
                        max_ms,
                    },
                })
            }
        }
    }
    match skipped.is_empty() {
        true => Decision::Abort(AbortReason::EscalationExhausted { stall }),
        false => Decision::Abort(AbortReason::NeedsMoreDowntime {
            needed_ms: needed_downtime_ms(history, ctx).unwrap_or(u64::MAX),
            max_ms,
        }),
    }
}

/// The forcing action, or the downtime it would need when that exceeds the ceiling.
fn force(plan: &Plan, history: &[PassRecord], state: &PolicyState, ctx: Context) -> Result<Action, u64> {
    let max_ms = plan.limits.max_downtime.as_millis() as u64;
    let needed = needed_downtime_ms(history, ctx).unwrap_or(max_ms);
    if needed > max_ms {
        return Err(needed);
    }
    Ok(match plan.policy.force {
        ForceMethod::StopGuest => Action::StopGuest,
        ForceMethod::RaiseLimit => Action::RaiseDowntime {
            to_ms: needed.max(state.downtime_limit_ms + 1),
        },
    })
}

fn throttle_of(plan: &Plan) -> Throttle {
    let p = &plan.policy;
    match p.throttle {
        ThrottleMethod::AutoConverge => Throttle::AutoConverge {
            initial: p.throttle_initial,
            increment: p.throttle_increment,
            max: p.throttle_max,
        },
        ThrottleMethod::DirtyLimit => Throttle::DirtyLimit {
            mib_per_sec: (p.dirty_limit.mib_per_sec().round() as u64).max(1),
        },
    }
}

/// Decides when `limits.deadline` has passed.
pub fn decide_at_deadline(
    plan: &Plan,
    history: &[PassRecord],
    state: &PolicyState,
    ctx: Context,
) -> Decision {
    let deadline_ms = plan.limits.deadline.as_millis() as u64;
    if plan.policy.on_deadline != Step::ForceDowntime || state.forced {
        return Decision::Abort(AbortReason::Deadline { deadline_ms });
    }
    match force(plan, history, state, ctx) {
        Ok(action) => Decision::Escalate {
            step: plan.policy.escalation.len(),
            action,
            trigger: Trigger::Deadline { deadline_ms },
            skipped: Vec::new(),
        },
        Err(needed_ms) => Decision::Abort(AbortReason::NeedsMoreDowntime {
            needed_ms,
            max_ms: plan.limits.max_downtime.as_millis() as u64,
        }),
    }
}
