//! Checks made before anything changes: both sides answer, the source runs the VM, the
//! destination waits for it, QEMU reports no blocker, and what the policy may need
//! (the KVM dirty ring for a dirty limit) exists.

use plans::{Plan, Step, ThrottleMethod};

use crate::driver::{DeviceInfo, MigrationStatus, PairFacts, RunState};
use crate::gate::Follow;

/// Every reason the hosts are not ready; empty when they are.
pub fn problems(plan: &Plan, facts: &PairFacts) -> Vec<String> {
    let mut out = Vec::new();
    let src = &facts.source;
    let dst = &facts.destination;

    if src.run_state != RunState::Running {
        out.push(format!(
            "source: the VM is not running (state {:?}); only a running VM is live-migrated",
            src.run_state
        ));
    }
    if matches!(
        src.migration,
        MigrationStatus::Setup
            | MigrationStatus::Active
            | MigrationStatus::PreSwitchover
            | MigrationStatus::Device
            | MigrationStatus::Cancelling
    ) {
        out.push(format!(
            "source: a migration is already in progress (status {:?})",
            src.migration
        ));
    }
    if dst.run_state != RunState::InMigrate {
        out.push(format!(
            "destination: not waiting for an incoming migration (state {:?}); start it with `-incoming defer`",
            dst.run_state
        ));
    }
    if plan.destination.listen.is_some() && dst.migration != MigrationStatus::None {
        out.push(format!(
            "destination: already has an incoming migration set up (status {:?}); drop `listen` from the plan or restart it with `-incoming defer`",
            dst.migration
        ));
    }
    for reason in &src.blocked_reasons {
        out.push(format!("source: QEMU blocks migration: {reason}"));
    }
    if let (Some(a), Some(b)) = (src.ram_bytes, dst.ram_bytes) {
        if a != b {
            out.push(format!(
                "destination: guest RAM differs ({a} bytes on the source, {b} here)"
            ));
        }
    }
    let throttles = plan.policy.escalation.contains(&Step::Throttle);
    if throttles && plan.policy.throttle == ThrottleMethod::DirtyLimit && src.dirty_ring_size.is_none() {
        out.push(
            "source: policy.throttle = \"dirty-limit\" needs the KVM dirty ring, which this guest does not have (start QEMU with -accel kvm,dirty-ring-size=4096, or use \"auto-converge\")"
                .to_string(),
        );
    }
    out
}

/// What preflight found about the plan's VFIO devices.
#[derive(Debug, Default)]
pub struct DeviceCheck {
    /// Reasons the hosts are not ready.
    pub problems: Vec<String>,
    /// Devices whose `migration-events` is off: (plan id, QOM path). Preflight tries to
    /// turn it on at runtime; QEMU refuses that for realized devices in most versions.
    pub enable_events: Vec<(String, String)>,
    /// Devices to follow through the migration.
    pub follow: Vec<Follow>,
    /// Things worth saying that change nothing.
    pub notes: Vec<String>,
}

/// Checks the plan's devices against the VFIO devices the source has.
pub fn devices(plan: &Plan, found: &[DeviceInfo]) -> DeviceCheck {
    let mut check = DeviceCheck::default();
    let names: Vec<&str> = found.iter().map(|d| d.id.as_str()).collect();
    for wanted in &plan.devices {
        let Some(dev) = found.iter().find(|d| d.id == wanted.id) else {
            check.problems.push(format!(
                "source: VFIO device {} not found (VFIO devices there: {})",
                wanted.id,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
            continue;
        };
        match dev.migration_events {
            Some(true) => {}
            Some(false) => check.enable_events.push((dev.id.clone(), dev.qom_path.clone())),
            None => check.problems.push(format!(
                "source: VFIO device {} has no `migration-events` property (QEMU 9.1 or newer is needed to follow device states)",
                dev.id
            )),
        }
        check.follow.push(Follow {
            id: wanted.id.clone(),
            qom_path: dev.qom_path.clone(),
            precopy: wanted.precopy,
        });
    }
    for dev in found {
        if plan.devices.iter().any(|d| d.id == dev.id) {
            continue;
        }
        if plan.vm.allow_unlisted_devices {
            check.notes.push(format!(
                "VFIO device {} ({}) is not in the plan; vm.allow_unlisted_devices lets it through, unfollowed",
                dev.id, dev.type_name
            ));
        } else {
            check.problems.push(format!(
                "source: VFIO device {} ({}) is not listed in the plan; add a [[devices]] entry for it, or set vm.allow_unlisted_devices = true",
                dev.id, dev.type_name
            ));
        }
    }
    check
}

/// The problem reported when `migration-events` cannot be turned on at runtime.
pub fn events_off_problem(id: &str, why: &str) -> String {
    format!(
        "source: VFIO device {id} has migration-events=off and QEMU refused to turn it on at runtime ({why}); start QEMU with `-device vfio-pci,...,id={id},migration-events=on` (libvirt: a <qemu:override> setting migration-events on the hostdev's alias)"
    )
}
