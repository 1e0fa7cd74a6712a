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
//!
//! Only evidence that can show what the last action did is judged:
//! - a boundary whose dirty rate was measured (even partly) before the last action took
//!   effect is not judged at all (QEMU's throttle from the moment it reports it, a dirty
//!   limit after [`DIRTY_LIMIT_SETTLE`]);
//! - syncs in a burst count as one pass: near the switchover threshold QEMU re-syncs
//!   whenever its estimate dips below it, a few hundred milliseconds apart. A boundary
//!   counts as a new pass once a pass's worth of data went out since the last one that
//!   did (three quarters of what was left then) or [`MIN_PASS`] went by.
//!
//! A throttle is sized, not ramped (`sizing.rs`): set in one step, checked at the first
//! boundary judged after it, and corrected once when the rate measured under it is still
//! well above the aim.

use std::time::Duration;

use plans::{ForceMethod, Plan, Step};
use serde::Serialize;

use crate::driver::Throttle;
use crate::estimate::threshold;
pub use crate::estimate::Context;
use crate::sizing::{self, Aim, Measured, Setting, Sizing};

/// Safety margin on the computed downtime: the last passes may not show the peak.
const DOWNTIME_MARGIN: f64 = 1.25;
/// A pass makes progress when `remaining` falls at least this much below the best.
const PROGRESS_FRACTION: f64 = 0.9;
/// Remaining data within this multiple of `bandwidth × downtime-limit` is never called
/// a stall for not shrinking: boundaries scatter around the threshold before one fits.
const NEAR_FACTOR: u64 = 2;
/// Syncs closer together than this (and with less than a pass's worth of data sent
/// between them) count as one pass.
pub const MIN_PASS: Duration = Duration::from_secs(1);
/// A boundary counts as a new pass once this share of what was left at the last one
/// that counted has been sent.
const PASS_WORTH: f64 = 0.75;
/// QEMU's dirty limit adjusts each vCPU's sleep once per measuring period (1 s,
/// `x-vcpu-dirty-limit-period`): a rate measured earlier after setting it shows the
/// guest before the limit held.
pub const DIRTY_LIMIT_SETTLE: Duration = Duration::from_secs(1);
/// How long a sized auto-converge throttle may take to show in QEMU's statistics before
/// boundaries are judged without it: QEMU applies it at a sync at least a second after
/// the last one that reconsidered it, every other time, and syncs at least every 5 s
/// while throttling.
pub const THROTTLE_ENGAGE_WAIT: Duration = Duration::from_secs(5);
/// At most this many corrections follow a sized throttle.
pub const MAX_CORRECTIONS: u32 = 1;

/// What was measured at one dirty-sync boundary.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// Where `dirty_rate` came from: `kernel:dirty-ring` or `kernel:dirty-bitmap` (the
    /// kernel's dirty log, through `calc-dirty-rate`), or `stats` (QEMU's
    /// `dirty-pages-rate`, which a kernel run also uses until its first measurement is
    /// in). A chart marks the two apart: they measure different things.
    pub dirty_rate_source: &'static str,
    /// Throughput in bytes/s.
    pub bandwidth: u64,
    /// Auto-converge's throttle at the boundary, percent (0 when not throttling).
    pub cpu_throttle: u64,
    /// When the measurement behind `dirty_rate` began, since the migration started.
    #[serde(serialize_with = "crate::report::ms")]
    pub rate_since: Duration,
    /// Per-vCPU dirty rates, bytes/s, when the measurement gives them (dirty ring).
    #[serde(skip)]
    pub vcpu_rates: Vec<u64>,
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
    /// The first boundary judged after a throttle measured a rate well above its aim.
    Check {
        /// Dirty rate measured under the throttle, bytes/s.
        dirty_rate: u64,
        /// The rate the throttle aimed for, bytes/s.
        target_rate: u64,
    },
}

/// Why the policy acted: what set it off and, for a throttle, what it was sized from.
#[derive(Debug, Clone, PartialEq)]
pub struct Because {
    /// What set it off.
    pub trigger: Trigger,
    /// How a throttle was sized.
    pub sizing: Option<Sizing>,
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
    /// Cancel the migration (the `abort` step, the deadline).
    Abort,
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
        because: Because,
        /// Steps passed over on the way (e.g. forcing that would exceed the ceiling).
        skipped: Vec<Skipped>,
    },
    /// Cancel the migration.
    Abort(Abort),
}

/// The policy's decision to cancel, with what led to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    /// Why it ends.
    pub reason: AbortReason,
    /// What set the policy off.
    pub trigger: Trigger,
    /// Steps passed over on the way to `abort`.
    pub skipped: Vec<Skipped>,
}

impl Decision {
    /// The abort's reason, when the decision is to abort.
    pub fn abort_reason(&self) -> Option<&AbortReason> {
        match self {
            Decision::Abort(abort) => Some(&abort.reason),
            _ => None,
        }
    }
}

/// The throttle the `throttle` step set, and what it aimed for.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// What was set.
    pub setting: Setting,
    /// The dirty rate aimed for, bytes/s.
    pub target_rate: u64,
    /// Where the aim came from.
    pub aim: Aim,
    /// Corrections made since.
    pub corrections: u32,
    /// When it was last set, since the migration started.
    pub at: Duration,
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
    /// When the last action was carried out, since the migration started.
    pub acted_at: Option<Duration>,
    /// The throttle in force, when the `throttle` step was taken.
    pub throttle: Option<Applied>,
}

/// Judges one boundary against the earlier ones since the last action.
pub fn assess(
    current: &PassRecord,
    earlier: &[&PassRecord],
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
    let judged = judged(window, state);
    if let Some(correction) = check_throttle(plan, &judged, state, ctx) {
        return correction;
    }
    let Some(stall) = stalled_run(
        &judged,
        state.downtime_limit_ms,
        ctx,
        plan.convergence.stall_passes,
    ) else {
        return Decision::Continue;
    };
    escalate(plan, history, &judged, state, ctx, stall)
}

/// The boundaries since the last action whose dirty rate was measured after that action
/// took effect: only they can show what it did.
pub fn judged<'h>(window: &'h [PassRecord], state: &PolicyState) -> Vec<&'h PassRecord> {
    let Some(acted_at) = state.acted_at else {
        return window.iter().collect();
    };
    let throttled_last = state.throttle.as_ref().filter(|t| t.at == acted_at);
    let effective = match throttled_last.map(|t| t.setting) {
        Some(Setting::Limit { .. }) => acted_at + DIRTY_LIMIT_SETTLE,
        // QEMU applies a sized throttle at its next trigger; it shows in the statistics.
        Some(Setting::Percent { percent }) => window
            .iter()
            .find(|r| r.elapsed >= acted_at && r.cpu_throttle == u64::from(percent))
            .map_or(acted_at + THROTTLE_ENGAGE_WAIT, |r| r.elapsed)
            .min(acted_at + THROTTLE_ENGAGE_WAIT),
        None => acted_at,
    };
    window.iter().filter(|r| r.rate_since >= effective).collect()
}

/// The boundaries that count as passes: a burst of syncs counts once, as its newest.
/// A boundary starts a new pass when, since the first boundary of the current one, a
/// pass's worth of data went out or [`MIN_PASS`] went by.
pub fn passes<'h>(judged: &[&'h PassRecord]) -> Vec<&'h PassRecord> {
    let mut reps: Vec<&PassRecord> = Vec::new();
    let mut start: Option<&PassRecord> = None;
    for &r in judged {
        let new_pass = start.is_none_or(|s| {
            let sent = r.transferred.saturating_sub(s.transferred) as f64;
            sent >= s.remaining as f64 * PASS_WORTH || r.elapsed.saturating_sub(s.elapsed) >= MIN_PASS
        });
        if new_pass {
            start = Some(r);
            reps.push(r);
        } else if let Some(last) = reps.last_mut() {
            *last = r;
        }
    }
    reps
}

/// The last stall's reason when the newest `needed` passes in `judged` all stalled.
fn stalled_run(judged: &[&PassRecord], downtime_ms: u64, ctx: Context, needed: u32) -> Option<StallReason> {
    let needed = needed.max(1) as usize;
    let passes = passes(judged);
    if passes.len() < needed {
        return None;
    }
    let mut last = None;
    for current in &passes[passes.len() - needed..] {
        let earlier: Vec<&PassRecord> = judged
            .iter()
            .copied()
            .take_while(|r| r.pass < current.pass)
            .collect();
        match assess(current, &earlier, downtime_ms, ctx) {
            Ok(()) => return None,
            Err(reason) => last = Some(reason),
        }
    }
    last
}

/// At the first boundary judged after a sized throttle: its correction when the rate
/// measured under it is still well above the aim and QEMU has not switched over.
fn check_throttle(
    plan: &Plan,
    judged: &[&PassRecord],
    state: &PolicyState,
    ctx: Context,
) -> Option<Decision> {
    let applied = state.throttle.as_ref()?;
    let [current] = judged else {
        return None;
    };
    if applied.corrections >= MAX_CORRECTIONS || state.acted_at != Some(applied.at) {
        return None;
    }
    if let Some(bandwidth) = ctx.bandwidth(current.bandwidth) {
        let near = threshold(bandwidth, state.downtime_limit_ms).saturating_mul(NEAR_FACTOR);
        if ctx.pending(current.remaining) <= near {
            // Close to fitting: QEMU switches over without more throttling.
            return None;
        }
    }
    let measured = measured(current, judged, state);
    let (throttle, sizing) = sizing::correct(
        plan,
        &applied.setting,
        applied.target_rate,
        applied.aim,
        &measured,
    )?;
    Some(Decision::Escalate {
        step: state.next_step.saturating_sub(1),
        action: Action::Throttle { throttle },
        because: Because {
            trigger: Trigger::Check {
                dirty_rate: current.dirty_rate,
                target_rate: applied.target_rate,
            },
            sizing: Some(sizing),
        },
        skipped: Vec::new(),
    })
}

/// What a throttle is sized from at `current`: the peak remaining of the recent judged
/// boundaries (a pass left more than a burst's last sync shows).
fn measured<'r>(current: &'r PassRecord, judged: &[&PassRecord], state: &PolicyState) -> Measured<'r> {
    let recent = &judged[judged.len().saturating_sub(3)..];
    let remaining = recent
        .iter()
        .map(|r| r.remaining)
        .max()
        .unwrap_or(current.remaining)
        .max(current.remaining);
    Measured {
        dirty_rate: current.dirty_rate,
        vcpu_rates: &current.vcpu_rates,
        bandwidth: current.bandwidth,
        remaining,
        cpu_throttle: current.cpu_throttle,
        downtime_ms: state.downtime_limit_ms,
    }
}

fn escalate(
    plan: &Plan,
    history: &[PassRecord],
    judged: &[&PassRecord],
    state: &PolicyState,
    ctx: Context,
    stall: StallReason,
) -> Decision {
    let mut skipped = Vec::new();
    let max_ms = plan.limits.max_downtime.as_millis() as u64;
    let trigger = Trigger::Stall(stall.clone());
    for (index, step) in plan.policy.escalation.iter().enumerate().skip(state.next_step) {
        match step {
            Step::Throttle => {
                let Some(current) = judged.last().copied().or(history.last()) else {
                    return Decision::Continue;
                };
                let (throttle, sizing) = sizing::first(plan, &measured(current, judged, state), ctx);
                return Decision::Escalate {
                    step: index,
                    action: Action::Throttle { throttle },
                    because: Because {
                        trigger,
                        sizing: Some(sizing),
                    },
                    skipped,
                };
            }
            Step::ForceDowntime => match force(plan, history, state, ctx) {
                Ok(action) => {
                    return Decision::Escalate {
                        step: index,
                        action,
                        because: Because {
                            trigger,
                            sizing: None,
                        },
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
                let reason = match skipped.is_empty() {
                    true => AbortReason::NotConverging { stall },
                    false => AbortReason::NeedsMoreDowntime {
                        needed_ms: needed_downtime_ms(history, ctx).unwrap_or(u64::MAX),
                        max_ms,
                    },
                };
                return Decision::Abort(Abort {
                    reason,
                    trigger,
                    skipped,
                });
            }
        }
    }
    let reason = match skipped.is_empty() {
        true => AbortReason::EscalationExhausted { stall },
        false => AbortReason::NeedsMoreDowntime {
            needed_ms: needed_downtime_ms(history, ctx).unwrap_or(u64::MAX),
            max_ms,
        },
    };
    Decision::Abort(Abort {
        reason,
        trigger,
        skipped,
    })
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

/// Decides when `limits.deadline` has passed.
pub fn decide_at_deadline(
    plan: &Plan,
    history: &[PassRecord],
    state: &PolicyState,
    ctx: Context,
) -> Decision {
    let deadline_ms = plan.limits.deadline.as_millis() as u64;
    let trigger = Trigger::Deadline { deadline_ms };
    let abort = |reason| {
        Decision::Abort(Abort {
            reason,
            trigger: trigger.clone(),
            skipped: Vec::new(),
        })
    };
    if plan.policy.on_deadline != Step::ForceDowntime || state.forced {
        return abort(AbortReason::Deadline { deadline_ms });
    }
    match force(plan, history, state, ctx) {
        Ok(action) => Decision::Escalate {
            step: plan.policy.escalation.len(),
            action,
            because: Because {
                trigger,
                sizing: None,
            },
            skipped: Vec::new(),
        },
        Err(needed_ms) => abort(AbortReason::NeedsMoreDowntime {
            needed_ms,
            max_ms: plan.limits.max_downtime.as_millis() as u64,
        }),
    }
}
