//! The convergence policy as a specification: given the measurements at pass
//! boundaries, what does it decide? Time is data here; nothing sleeps.

use std::time::Duration;

use engine::driver::Throttle;
use engine::policy::{
    self, Abort, AbortReason, Action, Applied, Context, Decision, PassRecord, PolicyState, StallReason,
};
use engine::sizing::{Aim, Setting};

const MIB: u64 = 1024 * 1024;

fn plan(policy: &str) -> plans::Plan {
    let text = format!(
        r#"[vm]
name = "t"
[source]
qmp = "unix:/s"
[destination]
qmp = "unix:/d"
listen = "tcp:127.0.0.1:1"
[limits]
downtime = "300ms"
max_downtime = "5s"
[convergence]
stall_passes = 2
[policy]
{policy}
"#
    );
    plans::load("test", &text).expect("valid test plan")
}

fn pass(n: u64, remaining_mib: u64, dirty_mib: u64, bandwidth_mib: u64) -> PassRecord {
    PassRecord {
        pass: n,
        elapsed: Duration::from_secs(n),
        remaining: remaining_mib * MIB,
        transferred: n * 256 * MIB,
        dirty_rate: dirty_mib * MIB,
        bandwidth: bandwidth_mib * MIB,
        rate_since: Duration::from_secs(n) - Duration::from_millis(1500),
        ..PassRecord::default()
    }
}

fn state() -> PolicyState {
    PolicyState {
        downtime_limit_ms: 300,
        ..PolicyState::default()
    }
}

const CTX: Context = Context {
    device_bytes: 0,
    fallback_bandwidth: None,
};

/// 256 MiB dirtied at 200 MiB/s over a 128 MiB/s link, as QEMU reports it pass by pass.
fn hot_guest() -> Vec<PassRecord> {
    vec![pass(2, 250, 200, 128), pass(3, 256, 200, 128)]
}

#[test]
fn a_shrinking_migration_continues() {
    let p = plan("escalation = [\"abort\"]");
    let history = vec![pass(2, 200, 50, 128), pass(3, 80, 50, 128)];
    assert_eq!(policy::decide(&p, &history, &state(), CTX), Decision::Continue);
}

#[test]
fn one_stalled_pass_is_not_enough() {
    let p = plan("escalation = [\"abort\"]");
    assert_eq!(
        policy::decide(&p, &hot_guest()[..1], &state(), CTX),
        Decision::Continue
    );
}

#[test]
fn dirtying_faster_than_the_link_aborts_after_stall_passes() {
    let p = plan("escalation = [\"abort\"]");
    match policy::decide(&p, &hot_guest(), &state(), CTX) {
        Decision::Abort(Abort {
            reason:
                AbortReason::NotConverging {
                    stall:
                        StallReason::DirtyRateAboveBandwidth {
                            dirty_rate,
                            bandwidth,
                        },
                },
            ..
        }) => {
            assert_eq!(dirty_rate, 200 * MIB);
            assert_eq!(bandwidth, 128 * MIB);
        }
        other => panic!("expected an abort for dirty rate above bandwidth, got {other:?}"),
    }
}

#[test]
fn remaining_that_does_not_shrink_is_a_stall_even_below_bandwidth() {
    let p = plan("escalation = [\"abort\"]");
    let history = vec![
        pass(2, 200, 100, 128),
        pass(3, 195, 100, 128),
        pass(4, 199, 100, 128),
    ];
    assert!(matches!(
        policy::decide(&p, &history, &state(), CTX),
        Decision::Abort(Abort {
            reason: AbortReason::NotConverging {
                stall: StallReason::NoProgress { .. }
            },
            ..
        })
    ));
}

#[test]
fn what_fits_the_downtime_limit_is_never_a_stall() {
    let p = plan("escalation = [\"abort\"]");
    // 20 MiB at 128 MiB/s is 156 ms: QEMU will switch over at this boundary.
    let history = vec![pass(2, 20, 200, 128), pass(3, 20, 200, 128)];
    assert_eq!(policy::decide(&p, &history, &state(), CTX), Decision::Continue);
}

#[test]
fn the_first_step_of_the_escalation_is_taken_first() {
    let p = plan("escalation = [\"throttle\", \"force-downtime\", \"abort\"]\nthrottle = \"dirty-limit\"");
    assert!(matches!(
        policy::decide(&p, &hot_guest(), &state(), CTX),
        Decision::Escalate {
            step: 0,
            action: Action::Throttle { .. },
            ..
        }
    ));
}

#[test]
fn a_dirty_limit_is_sized_so_that_what_is_left_fits_within_two_passes() {
    let p =
        plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"10MiB/s\"");
    // 256 MiB left, 38.4 MiB fits 300 ms at 128 MiB/s: 128 × √(38.4/256) = 49.6 MiB/s.
    let (throttle, because) = throttled(policy::decide(&p, &hot_guest(), &state(), CTX));
    assert_eq!(throttle, Throttle::DirtyLimit { mib_per_sec: 49 });
    let words = because.to_string();
    assert!(
        words.starts_with("dirty rate 200MiB/s is not below bandwidth 128MiB/s; dirty limit 49MiB/s per vCPU: dirty 200MiB/s must fall to 49.57MiB/s for 256MiB left to shrink below 38.4MiB (bandwidth 128MiB/s × downtime-limit 300ms) within 2 passes"),
        "{words}"
    );
}

#[test]
fn a_dirty_limit_never_goes_below_the_plans_floor() {
    let p =
        plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"60MiB/s\"");
    let (throttle, because) = throttled(policy::decide(&p, &hot_guest(), &state(), CTX));
    assert_eq!(throttle, Throttle::DirtyLimit { mib_per_sec: 60 });
    assert!(
        because
            .to_string()
            .ends_with("; raised to policy.dirty_limit (60MiB/s), the floor"),
        "{because}"
    );
}

#[test]
fn a_dirty_limit_shares_the_aim_among_the_vcpus_that_dirty() {
    let p =
        plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"1MiB/s\"");
    let mut history = hot_guest();
    // One vCPU idles at 2 MiB/s, two dirty 99 MiB/s each: they share 47.6 MiB/s.
    history[1].vcpu_rates = vec![2 * MIB, 99 * MIB, 99 * MIB];
    let (throttle, _) = throttled(policy::decide(&p, &history, &state(), CTX));
    assert_eq!(throttle, Throttle::DirtyLimit { mib_per_sec: 23 });
}

#[test]
fn auto_converge_jumps_to_the_computed_throttle_in_one_step() {
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"auto-converge\"");
    let mut history = hot_guest();
    for r in &mut history {
        r.cpu_throttle = 1; // armed at setup
    }
    // 200 MiB/s to 49.6 MiB/s with 99% of the vCPU time: keep 0.99 × 0.248 of it.
    let (throttle, because) = throttled(policy::decide(&p, &history, &state(), CTX));
    assert_eq!(
        throttle,
        Throttle::AutoConverge {
            initial: 76,
            increment: 75,
            max: 76
        },
        "QEMU lands on 76% at its next trigger whether or not it throttles yet"
    );
    assert!(
        because
            .to_string()
            .contains("throttle 76%: dirty 200MiB/s at 1% must fall to 49.57MiB/s"),
        "{because}"
    );
}

#[test]
fn a_computed_throttle_is_held_at_throttle_max() {
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"auto-converge\"\nthrottle_max = 50");
    let (throttle, because) = throttled(policy::decide(&p, &hot_guest(), &state(), CTX));
    assert!(
        matches!(throttle, Throttle::AutoConverge { max: 50, .. }),
        "{throttle:?}"
    );
    assert!(
        because
            .to_string()
            .ends_with("; held at policy.throttle_max (50%)"),
        "{because}"
    );
}

/// The policy state after a throttle aimed at 49.6 MiB/s was set at +4 s.
fn throttled_at_4s(setting: Setting) -> PolicyState {
    PolicyState {
        next_step: 1,
        since: 2,
        acted_at: Some(Duration::from_secs(4)),
        throttle: Some(Applied {
            setting,
            target_rate: 49 * MIB,
            aim: Aim::UnderBandwidth { bandwidth: 128 * MIB },
            corrections: 0,
            at: Duration::from_secs(4),
        }),
        ..state()
    }
}

#[test]
fn a_throttle_far_above_its_aim_is_corrected_once_at_the_next_boundary() {
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"auto-converge\"");
    let mut history = hot_guest();
    // QEMU applied the throttle at the sync of pass 4 (+6 s); pass 5's rate is the
    // first measured under it.
    let mut applied = pass(4, 256, 200, 128);
    applied.elapsed = Duration::from_secs(6);
    applied.rate_since = Duration::from_millis(4_500);
    applied.cpu_throttle = 76;
    history.push(applied);
    let mut next = pass(5, 256, 180, 128);
    next.elapsed = Duration::from_secs(8);
    next.rate_since = Duration::from_millis(6_200);
    next.cpu_throttle = 76;
    history.push(next);
    let mut s = throttled_at_4s(Setting::Percent { percent: 76 });
    // 180 MiB/s with 24% of the time left: 49 MiB/s needs 1 − 0.24 × 49/180 = 94%.
    match policy::decide(&p, &history, &s, CTX) {
        Decision::Escalate {
            step: 0,
            action: Action::Throttle { throttle },
            because,
            ..
        } => {
            assert_eq!(
                throttle,
                Throttle::AutoConverge {
                    initial: 94,
                    increment: 18,
                    max: 94
                }
            );
            assert!(
                because.to_string().starts_with("dirty rate 180MiB/s measured under the throttle is still above the 49MiB/s it aimed for; throttle 94%: dirty 180MiB/s at 76%"),
                "{because}"
            );
        }
        other => panic!("expected a correction, got {other:?}"),
    }
    if let Some(applied) = &mut s.throttle {
        applied.corrections = 1;
    }
    assert_eq!(
        policy::decide(&p, &history, &s, CTX),
        Decision::Continue,
        "corrected once only"
    );
}

#[test]
fn a_throttle_near_its_aim_is_left_alone() {
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"");
    let mut history = hot_guest();
    let mut next = pass(4, 200, 55, 128);
    next.elapsed = Duration::from_secs(7);
    next.rate_since = Duration::from_secs(5);
    history.push(next);
    let s = throttled_at_4s(Setting::Limit { mib_per_sec: 49 });
    assert_eq!(policy::decide(&p, &history, &s, CTX), Decision::Continue);
}

#[test]
fn a_boundary_measured_before_the_last_action_took_effect_is_not_judged() {
    // A dirty limit went on at +4 s. QEMU re-synced three times near its threshold, each
    // boundary carrying a kernel rate measured from +3.2 s, before the limit held.
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"");
    let mut history = hot_guest();
    for (n, at_ms) in [(4, 4_100), (5, 4_300), (6, 4_600), (7, 5_500)] {
        let mut r = pass(n, 150, 156, 129);
        r.elapsed = Duration::from_millis(at_ms);
        r.rate_since = Duration::from_millis(3_200);
        history.push(r);
    }
    let mut s = throttled_at_4s(Setting::Limit { mib_per_sec: 49 });
    s.throttle = s.throttle.map(|t| Applied { corrections: 1, ..t });
    assert_eq!(policy::decide(&p, &history, &s, CTX), Decision::Continue);
    // A rate measured after the limit held is evidence again.
    let mut fresh = pass(8, 150, 156, 129);
    fresh.elapsed = Duration::from_millis(7_500);
    fresh.rate_since = Duration::from_millis(5_100);
    history.push(fresh.clone());
    fresh.pass = 9;
    fresh.elapsed = Duration::from_millis(9_500);
    fresh.transferred += 200 * MIB;
    history.push(fresh);
    assert!(policy::decide(&p, &history, &s, CTX).abort_reason().is_some());
}

#[test]
fn a_burst_of_syncs_near_the_threshold_counts_as_one_pass() {
    let p = plan("escalation = [\"abort\"]");
    // Remaining hovers at 140–150 MiB while QEMU syncs 100–300 ms apart; the guest dirties
    // below the link. One pass's worth of evidence, not three.
    let mut history = vec![pass(4, 150, 100, 128)];
    history[0].elapsed = Duration::from_secs(8);
    for (n, at_ms, left) in [(5, 10_000, 140), (6, 10_100, 150), (7, 10_300, 145)] {
        let mut r = pass(n, left, 100, 128);
        r.elapsed = Duration::from_millis(at_ms);
        r.transferred = history[0].transferred + 150 * MIB + (n - 5) * 13 * MIB;
        history.push(r);
    }
    assert_eq!(policy::decide(&p, &history, &state(), CTX), Decision::Continue);
}

#[test]
fn passes_a_second_apart_count_as_passes_even_when_small() {
    let p = plan("escalation = [\"abort\"]");
    let mut history = vec![
        pass(4, 150, 100, 128),
        pass(5, 150, 100, 128),
        pass(6, 150, 100, 128),
    ];
    for r in &mut history {
        r.transferred = 0;
    }
    assert!(policy::decide(&p, &history, &state(), CTX)
        .abort_reason()
        .is_some());
}

fn throttled(decision: Decision) -> (Throttle, policy::Because) {
    match decision {
        Decision::Escalate {
            action: Action::Throttle { throttle },
            because,
            ..
        } => (throttle, because),
        other => panic!("expected a throttle, got {other:?}"),
    }
}

#[test]
fn after_an_action_the_next_step_waits_for_new_stalled_passes() {
    let p = plan("escalation = [\"throttle\", \"abort\"]");
    let mut s = state();
    s.next_step = 1;
    s.since = 2; // the throttle was applied after pass 3
    assert_eq!(policy::decide(&p, &hot_guest(), &s, CTX), Decision::Continue);
    let mut history = hot_guest();
    history.push(pass(4, 256, 200, 128));
    history.push(pass(5, 256, 200, 128));
    assert!(matches!(
        policy::decide(&p, &history, &s, CTX),
        Decision::Abort(_)
    ));
}

#[test]
fn forcing_raises_the_limit_to_what_the_peak_needs_with_margin() {
    let p = plan("escalation = [\"force-downtime\", \"abort\"]");
    match policy::decide(&p, &hot_guest(), &state(), CTX) {
        // 256 MiB / 128 MiB/s = 2 s, × 1.25 = 2.5 s.
        Decision::Escalate {
            action: Action::RaiseDowntime { to_ms },
            ..
        } => assert_eq!(to_ms, 2500),
        other => panic!("expected a raised downtime limit, got {other:?}"),
    }
}

#[test]
fn forcing_counts_the_device_state_qemu_does_not_show() {
    let p = plan("escalation = [\"force-downtime\", \"abort\"]");
    let ctx = Context {
        device_bytes: 128 * MIB,
        fallback_bandwidth: None,
    };
    match policy::decide(&p, &hot_guest(), &state(), ctx) {
        // (256 + 128) MiB / 128 MiB/s = 3 s, × 1.25.
        Decision::Escalate {
            action: Action::RaiseDowntime { to_ms },
            ..
        } => assert_eq!(to_ms, 3750),
        other => panic!("expected a raised downtime limit, got {other:?}"),
    }
}

#[test]
fn forcing_beyond_the_ceiling_is_skipped_and_the_policy_aborts_saying_why() {
    let p = plan("escalation = [\"force-downtime\", \"abort\"]");
    let big = vec![pass(2, 900, 200, 128), pass(3, 900, 200, 128)];
    match policy::decide(&p, &big, &state(), CTX) {
        Decision::Abort(Abort {
            reason: AbortReason::NeedsMoreDowntime { needed_ms, max_ms },
            ..
        }) => {
            assert_eq!(max_ms, 5000);
            assert!(needed_ms > 5000, "{needed_ms}");
        }
        other => panic!("expected an abort for needing more downtime, got {other:?}"),
    }
}

#[test]
fn a_device_state_too_large_for_the_limit_is_a_stall_from_the_first_boundary() {
    let p = plan("escalation = [\"abort\"]");
    let ctx = Context {
        device_bytes: 100 * MIB,
        fallback_bandwidth: None,
    };
    let history = vec![pass(2, 10, 1, 128), pass(3, 5, 1, 128)];
    assert!(matches!(
        policy::decide(&p, &history, &state(), ctx),
        Decision::Abort(Abort {
            reason: AbortReason::NotConverging {
                stall: StallReason::DeviceStateTooLarge { .. }
            },
            ..
        })
    ));
}

#[test]
fn exhausting_the_escalation_aborts() {
    let p = plan("escalation = [\"throttle\"]");
    let mut s = state();
    s.next_step = 1;
    assert!(matches!(
        policy::decide(&p, &hot_guest(), &s, CTX),
        Decision::Abort(Abort {
            reason: AbortReason::EscalationExhausted { .. },
            ..
        })
    ));
}

#[test]
fn the_deadline_aborts_by_default() {
    let p = plan("escalation = [\"throttle\", \"abort\"]");
    assert!(matches!(
        policy::decide_at_deadline(&p, &hot_guest(), &state(), CTX),
        Decision::Abort(Abort {
            reason: AbortReason::Deadline { deadline_ms: 600_000 },
            ..
        })
    ));
}

#[test]
fn the_deadline_can_force_once_then_aborts() {
    let p = plan("escalation = [\"abort\"]\non_deadline = \"force-downtime\"");
    assert!(matches!(
        policy::decide_at_deadline(&p, &hot_guest(), &state(), CTX),
        Decision::Escalate {
            action: Action::RaiseDowntime { .. },
            ..
        }
    ));
    let mut forced = state();
    forced.forced = true;
    assert!(matches!(
        policy::decide_at_deadline(&p, &hot_guest(), &forced, CTX),
        Decision::Abort(Abort {
            reason: AbortReason::Deadline { .. },
            ..
        })
    ));
}

#[test]
fn without_a_measured_bandwidth_the_plans_cap_is_used() {
    let p = plan("escalation = [\"abort\"]");
    let ctx = Context {
        device_bytes: 0,
        fallback_bandwidth: Some(128 * MIB),
    };
    let history = vec![pass(2, 250, 200, 0), pass(3, 256, 200, 0)];
    assert!(matches!(
        policy::decide(&p, &history, &state(), ctx),
        Decision::Abort(_)
    ));
}

#[test]
fn remaining_scattering_near_the_threshold_is_not_a_stall() {
    let p = plan("escalation = [\"abort\"]");
    // Threshold: 128 MiB/s × 300 ms = 38.4 MiB. A throttled guest's boundaries scatter
    // around it (27, 60, 36 MiB) before one fits.
    let history = vec![pass(5, 27, 50, 128), pass(6, 60, 50, 128), pass(7, 36, 50, 128)];
    assert_eq!(policy::decide(&p, &history, &state(), CTX), Decision::Continue);
}
