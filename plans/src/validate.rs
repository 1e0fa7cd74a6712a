//! Checks that involve more than one key: what QEMU would refuse, and combinations that
//! cannot do what the operator means.

use std::time::Duration;

use crate::diagnostic::Diagnostic;
use crate::model::{ForceMethod, Limits, Plan, QmpAddress, Step};
use crate::parse::Spans;
use crate::reader::Mistakes;
use crate::text::{bounded, quoted};

mod libvirt;
mod stream;
mod tls;

/// QEMU's largest `downtime-limit`, in milliseconds.
pub const QEMU_MAX_DOWNTIME_MS: u64 = 2_000_000;

/// Runs every cross-key check on a plan that read without mistakes.
pub(crate) fn check(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    // The other checks take both sides to be of one kind; a plan that mixes them hears
    // that alone.
    if !libvirt::check_one_kind(plan, spans, m) {
        return;
    }
    check_route(plan, spans, m);
    libvirt::check(plan, spans, m);
    tls::check(plan, spans, m);
    stream::check(plan, spans, m);
    check_limits(&plan.limits, spans, m);
    check_convergence(plan, spans, m);
    check_policy(plan, spans, m);
    check_devices(plan, spans, m);
}

/// The two sides and the stream between them.
fn check_route(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    if plan.migration.postcopy && !plan.devices.is_empty() {
        m.push(
            Diagnostic::new(
                "migration.postcopy",
                spans.of("migration.postcopy"),
                "post-copy is not supported with VFIO devices",
            )
            .hint("QEMU refuses it (\"VFIO migration is not supported with postcopy migration\"); remove the key or set it to false"),
        );
    }

    // Through libvirt the daemons pick the route when the plan names none.
    if plan.migration_uri().is_none() && !plan.is_libvirt() {
        m.push(
            Diagnostic::new("migration.uri", spans.of("destination"), "no migration URI")
                .hint("set `listen` in [destination] (the tool makes the destination listen there) or `uri` in [migration]"),
        );
    }

    check_remote_qmp(plan, spans, m);

    let destination_qmp = plan.destination.endpoint.qmp();
    if plan
        .source
        .qmp()
        .is_some_and(|source| Some(source) == destination_qmp)
    {
        m.push(
            Diagnostic::new(
                "destination.qmp",
                spans.of("destination.qmp"),
                "source and destination name the same QMP socket",
            )
            .hint("a VM cannot migrate onto itself; give the destination QEMU's own socket"),
        );
    }
}

/// QMP has no authentication: whoever reaches a monitor's port controls the VM. A
/// monitor on another host is refused unless `[security] remote_qmp` says the network
/// between is trusted.
fn check_remote_qmp(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    if plan.security.remote_qmp {
        return;
    }
    for (key, endpoint) in [
        ("source.qmp", &plan.source),
        ("destination.qmp", &plan.destination.endpoint),
    ] {
        if let Some(address @ QmpAddress::Tcp(host, _)) = endpoint.qmp() {
            if address.is_remote() {
                m.push(
                    Diagnostic::new(
                        key,
                        spans.of(key),
                        format!("QMP over TCP to {} is refused: the monitor protocol has no authentication", bounded(host)),
                    )
                    .hint("use a unix socket, or an SSH-forwarded local one; on a network where anyone who reaches the port may control the VM, set `remote_qmp = true` in [security]"),
                );
            }
        }
    }
}

/// What QEMU takes as a downtime limit, and limits that contradict each other.
fn check_limits(limits: &Limits, spans: &Spans, m: &mut Mistakes) {
    for (key, value) in [
        ("limits.downtime", limits.downtime),
        ("limits.max_downtime", limits.max_downtime),
    ] {
        if value > Duration::from_millis(QEMU_MAX_DOWNTIME_MS) {
            m.push(
                Diagnostic::new(
                    key,
                    spans.of(key),
                    "is above QEMU's largest downtime limit (2000000ms)",
                )
                .hint("QEMU accepts at most 2000s"),
            );
        }
        if value < Duration::from_millis(1) {
            m.push(Diagnostic::new(
                key,
                spans.of(key),
                "is below 1ms, the smallest downtime QEMU takes",
            ));
        }
    }
    if limits.max_downtime < limits.downtime {
        m.push(
            Diagnostic::new(
                "limits.max_downtime",
                spans.of("limits.max_downtime"),
                "is smaller than `downtime`",
            )
            .hint("the ceiling for forcing must be at least the starting downtime limit"),
        );
    }
    if limits.saving_timeout > limits.deadline {
        m.push(
            Diagnostic::new(
                "limits.saving_timeout",
                spans.of("limits.saving_timeout"),
                "is longer than `deadline`",
            )
            .hint("devices must reach their saving state before the whole migration's deadline"),
        );
    }
}

fn check_convergence(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let conv = &plan.convergence;
    if conv.calc_time < Duration::from_millis(100) || conv.calc_time > Duration::from_secs(60) {
        m.push(
            Diagnostic::new(
                "convergence.calc_time",
                spans.of("convergence.calc_time"),
                "must be between 100ms and 60s",
            )
            .hint("QEMU's calc-dirty-rate measures for 0.1 to 60 seconds"),
        );
    }
    if conv.sample_interval > plan.limits.deadline {
        m.push(Diagnostic::new(
            "convergence.sample_interval",
            spans.of("convergence.sample_interval"),
            "is longer than `limits.deadline`",
        ));
    }
}

fn check_policy(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let policy = &plan.policy;
    if policy.throttle_initial > policy.throttle_max {
        m.push(
            Diagnostic::new(
                "policy.throttle_initial",
                spans.of("policy.throttle_initial"),
                "is above `throttle_max`",
            )
            .hint("the first throttle step cannot exceed the most the guest may be throttled"),
        );
    }
    let forces =
        policy.escalation.contains(&Step::ForceDowntime) || policy.on_deadline == Step::ForceDowntime;
    if forces && policy.force == ForceMethod::StopGuest && !plan.devices.is_empty() {
        m.push(
            Diagnostic::new("policy.force", spans.of("policy.force"), "\"stop-guest\" cannot be used with VFIO devices")
                .hint("stopping vCPUs does not stop device DMA in every case; use \"raise-limit\" so QEMU switches over with the devices in stop-copy"),
        );
    }
}

fn check_devices(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in plan.devices.iter().enumerate() {
        if seen.contains(&d.id.as_str()) {
            let key = format!("devices[{i}].id");
            m.push(
                Diagnostic::new(
                    key.clone(),
                    spans.of(&key),
                    format!("device {} is listed twice", quoted(&d.id)),
                )
                .hint("each [[devices]] entry names one device by its QOM id"),
            );
        }
        seen.push(&d.id);
    }
}
