//! The convergence policy as a specification: given the measurements at pass
//! boundaries, what does it decide? Time is data here; nothing sleeps.

use std::time::Duration;

use engine::driver::Throttle;
use engine::policy::{self, AbortReason, Action, Context, Decision, PassRecord, PolicyState, StallReason};

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
        cpu_throttle: 0,
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
        Decision::Abort(AbortReason::NotConverging {
            stall:
                StallReason::DirtyRateAboveBandwidth {
                    dirty_rate,
                    bandwidth,
                },
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
        Decision::Abort(AbortReason::NotConverging {
            stall: StallReason::NoProgress { .. }
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
    let p = plan("escalation = [\"throttle\", \"force-downtime\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"40MiB/s\"");
    match policy::decide(&p, &hot_guest(), &state(), CTX) {
        Decision::Escalate {
            step: 0,
            action: Action::Throttle { throttle },
            ..
        } => {
            assert_eq!(throttle, Throttle::DirtyLimit { mib_per_sec: 40 });
        }
        other => panic!("expected throttle, got {other:?}"),
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
        Decision::Abort(AbortReason::NeedsMoreDowntime { needed_ms, max_ms }) => {
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
        Decision::Abort(AbortReason::NotConverging {
            stall: StallReason::DeviceStateTooLarge { .. }
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
        Decision::Abort(AbortReason::EscalationExhausted { .. })
    ));
}

#[test]
fn the_deadline_aborts_by_default() {
    let p = plan("escalation = [\"throttle\", \"abort\"]");
    assert!(matches!(
        policy::decide_at_deadline(&p, &hot_guest(), &state(), CTX),
        Decision::Abort(AbortReason::Deadline { deadline_ms: 600_000 })
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
        Decision::Abort(AbortReason::Deadline { .. })
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

#[test]
fn auto_converge_gets_to_ramp_up_to_its_maximum_before_the_next_step() {
    let p = plan("escalation = [\"throttle\", \"abort\"]\nthrottle = \"auto-converge\"\nthrottle_max = 90");
    let mut s = state();
    s.next_step = 1;
    let mut ramping = hot_guest();
    for r in &mut ramping {
        r.cpu_throttle = 41;
    }
    assert_eq!(policy::decide(&p, &ramping, &s, CTX), Decision::Continue);
    for r in &mut ramping {
        r.cpu_throttle = 90;
    }
    assert!(matches!(
        policy::decide(&p, &ramping, &s, CTX),
        Decision::Abort(_)
    ));
}
