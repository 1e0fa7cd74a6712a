//! Judging what `check` read: each fact the plan depends on becomes a [`Row`]. Pure, so
//! that every row can be produced in a test without a QEMU.

use plans::{Plan, Step, ThrottleMethod};

use crate::driver::{PairFacts, Side, SideSurvey};
use crate::placement::{Placement, Sides};
use crate::preflight::{self, Problem};

use super::read::Reading;
use super::Row;

/// Every row about the two monitors and the plan's devices as QEMU shows them.
pub fn monitor_rows(plan: &Plan, reading: &Reading) -> Vec<Row> {
    let mut rows = Vec::new();
    for side in [Side::Source, Side::Destination] {
        rows.push(reachable(plan, side, reading));
    }
    if let Some(facts) = &reading.facts {
        rows.extend(version_rows(plan, facts));
        rows.push(placement(facts));
        rows.extend(incoming(plan, facts));
        rows.push(ram(plan, facts));
    }
    if let Some(facts) = &reading.facts {
        rows.extend(destination_refusals(facts));
    }
    if let (Some(src), Some(dst)) = (&reading.source, &reading.destination) {
        rows.push(machine(plan, src, dst));
        match plan.is_libvirt() {
            true => rows.push(libvirt_capabilities()),
            false => rows.extend(capability_rows(plan, reading.facts.as_ref(), src, dst)),
        }
    }
    if let Some(src) = &reading.source {
        rows.extend(match plan.is_libvirt() {
            true => vec![libvirt_blockers()],
            false => blockers(src),
        });
        rows.extend(super::devices::device_rows(plan, reading, src));
        rows.extend(viommu(plan, src));
    }
    rows
}

fn reachable(plan: &Plan, side: Side, reading: &Reading) -> Row {
    let id = format!("{side}.reachable");
    if let Some(e) = reading.unreachable.iter().find(|e| e.side == side) {
        let hint = match plan.is_libvirt() {
            true => format!("check that the {side} libvirt daemon answers at the plan's URI (`virsh -c URI list`) and that the domain exists there"),
            false => format!("check that the {side} QEMU runs with its monitor where the plan says (`-qmp unix:PATH,server=on,wait=off`)"),
        };
        return Row::fail(id, e.message.clone(), hint);
    }
    let version = reading
        .facts
        .as_ref()
        .map(|f| match side {
            Side::Source => f.source.version.clone(),
            Side::Destination => f.destination.version.clone(),
        })
        .unwrap_or_else(|| "QEMU".into());
    Row::pass(id, format!("answers (QEMU {version})"))
}

fn version_rows(plan: &Plan, facts: &PairFacts) -> Vec<Row> {
    let caps = crate::driver::Capabilities {
        switchover_hold: true,
        device_events: true,
        kernel_dirty_rate: true,
        listen: true,
    };
    let problems = preflight::versions::problems(plan, caps, facts);
    if problems.is_empty() {
        let found = format!(
            "source {}, destination {}: new enough for this plan",
            facts.source.version, facts.destination.version
        );
        return vec![Row::pass("qemu.versions", found)];
    }
    problems
        .iter()
        .map(|p| {
            let side = p.side().map(|s| s.to_string()).unwrap_or_else(|| "qemu".into());
            Row::fail(
                format!("{side}.qemu_version"),
                p.to_string(),
                "upgrade QEMU on that host, or drop what needs the newer release from the plan",
            )
        })
        .collect()
}

fn placement(facts: &PairFacts) -> Row {
    let sides = Sides::from(facts);
    let placement = sides.placement();
    let words = Problem::Placement {
        placement: placement.clone(),
        sides,
    }
    .to_string();
    match placement {
        Placement::OnSource => Row::pass("vm.placement", format!("{words}; no migration under way")),
        Placement::Migrated => Row::pass("vm.placement", format!("{words}: a run would change nothing")),
        _ => Row::fail(
            "vm.placement",
            words,
            "see the finding; `vfio-migrate recover PLAN` settles what a run left behind",
        ),
    }
}

/// Whether the destination waits for this plan's stream; nothing to say once migrated.
fn incoming(plan: &Plan, facts: &PairFacts) -> Option<Row> {
    if Sides::from(facts).placement() != Placement::OnSource {
        return None;
    }
    let problems: Vec<Problem> = preflight::pair_problems(plan, facts)
        .into_iter()
        .filter(|p| {
            matches!(
                p,
                Problem::DestinationNotWaiting { .. }
                    | Problem::DestinationNotListening
                    | Problem::IncomingAlreadySetUp { .. }
            )
        })
        .collect();
    Some(match problems.first() {
        None => Row::pass(
            "destination.incoming",
            format!("waiting for an incoming migration (state {})", facts.destination.run_state),
        ),
        Some(p) => Row::fail(
            "destination.incoming",
            p.to_string(),
            "start the destination QEMU with `-incoming defer` (and `listen` in the plan) or `-incoming tcp:HOST:PORT`",
        ),
    })
}

fn ram(plan: &Plan, facts: &PairFacts) -> Row {
    match (facts.source.ram_bytes, facts.destination.ram_bytes) {
        (Some(s), Some(d)) if s == d => Row::pass("vm.ram", format!("{} MiB on both sides", s >> 20)),
        (Some(s), None) if plan.is_libvirt() => Row::pass(
            "vm.ram",
            format!("{} MiB; libvirt gives the destination the source's", s >> 20),
        ),
        (Some(s), Some(d)) => Row::fail(
            "vm.ram",
            format!(
                "guest RAM differs: source {} MiB, destination {} MiB",
                s >> 20,
                d >> 20
            ),
            "start the destination with the source's `-m`",
        ),
        _ => Row::warn(
            "vm.ram",
            "guest RAM size not reported by one side",
            "compare `-m` on both command lines",
        ),
    }
}

fn blockers(src: &SideSurvey) -> Vec<Row> {
    if src.blocked_reasons.is_empty() {
        return vec![Row::pass("source.blockers", "QEMU reports no migration blocker")];
    }
    src.blocked_reasons
        .iter()
        .map(|reason| {
            Row::fail(
                "source.blockers",
                format!("QEMU blocks migration: {reason}"),
                "remove what QEMU names (a device or option without migration support) before migrating",
            )
        })
        .collect()
}

/// What the destination daemon refuses (a moved device it cannot give the VM).
fn destination_refusals(facts: &PairFacts) -> Vec<Row> {
    facts
        .destination
        .blocked_reasons
        .iter()
        .map(|reason| {
            Row::fail(
                "destination.refuses",
                Problem::DestinationRefuses { reason: reason.clone() }.to_string(),
                "name a destination device that exists there, is bound to the source device's driver and is free",
            )
        })
        .collect()
}

/// libvirt sets the capabilities a migration needs itself, for each migration.
fn libvirt_capabilities() -> Row {
    Row::pass(
        "capability.libvirt",
        "libvirt turns on the migration capabilities itself for each migration (events, pause-before-switchover, return-path, switchover-ack, and those the plan's flags ask for)",
    )
}

/// libvirt has no call that lists QEMU's blockers.
fn libvirt_blockers() -> Row {
    Row::warn(
        "source.blockers",
        "not read: libvirt has no call that lists QEMU's migration blockers (it refuses a blocked migration when it starts, before anything changes)",
        "`virsh qemu-monitor-command DOMAIN '{\"execute\":\"query-migrate\"}'` shows `blocked-reasons` (libvirt marks the domain tainted)",
    )
}

fn machine(plan: &Plan, src: &SideSurvey, dst: &SideSurvey) -> Row {
    match (&src.machine, &dst.machine) {
        (Some(s), Some(d)) if s == d => Row::pass("vm.machine", format!("{s} on both sides")),
        (Some(s), None) if plan.is_libvirt() => Row::pass(
            "vm.machine",
            format!("{s}; libvirt starts the destination from the source's domain XML"),
        ),
        (Some(s), Some(d)) => Row::fail(
            "vm.machine",
            format!("machine types differ: source {s}, destination {d}"),
            "start the destination with the source's `-machine` type (the versioned name, e.g. pc-q35-10.0)",
        ),
        _ => Row::warn(
            "vm.machine",
            "machine type not readable on one side",
            "compare `-machine` on both command lines",
        ),
    }
}

/// The migration capabilities this plan will turn on, with the sides that need them.
fn needed_capabilities(plan: &Plan) -> Vec<(&'static str, &'static [Side], &'static str)> {
    const BOTH: &[Side] = &[Side::Source, Side::Destination];
    const SOURCE: &[Side] = &[Side::Source];
    let mut needed = vec![
        ("events", SOURCE, "following the migration"),
        (
            "pause-before-switchover",
            SOURCE,
            "holding the guest at pre-switchover",
        ),
    ];
    if plan.devices.iter().any(|d| d.precopy) {
        needed.push(("return-path", BOTH, "devices with precopy = true"));
        needed.push(("switchover-ack", BOTH, "devices with precopy = true"));
    }
    if plan.migration.multifd_channels.is_some() {
        needed.push(("multifd", BOTH, "migration.multifd_channels"));
    }
    if plan.migration.xbzrle_cache.is_some() {
        needed.push(("xbzrle", SOURCE, "migration.xbzrle_cache"));
    }
    let throttles = plan.policy.escalation.contains(&Step::Throttle);
    match plan.policy.throttle {
        ThrottleMethod::AutoConverge if throttles => {
            needed.push(("auto-converge", SOURCE, "policy.throttle = \"auto-converge\""))
        }
        ThrottleMethod::DirtyLimit if throttles => {
            needed.push(("dirty-limit", SOURCE, "policy.throttle = \"dirty-limit\""))
        }
        _ => {}
    }
    needed
}

fn capability_rows(plan: &Plan, facts: Option<&PairFacts>, src: &SideSurvey, dst: &SideSurvey) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, sides, why) in needed_capabilities(plan) {
        let missing: Vec<Side> = sides
            .iter()
            .copied()
            .filter(|side| {
                let survey = if *side == Side::Source { src } else { dst };
                !survey.capabilities.iter().any(|c| c == name)
            })
            .collect();
        let id = format!("capability.{name}");
        rows.push(match missing.as_slice() {
            [] => Row::pass(id, format!("`{name}` supported where needed, for {why}")),
            missing => Row::fail(
                id,
                format!(
                    "`{name}` is not supported on the {} (needed for {why})",
                    missing
                        .iter()
                        .map(Side::to_string)
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                "upgrade QEMU there, or drop what needs it from the plan",
            ),
        });
    }
    let wants_ring = plan.policy.escalation.contains(&Step::Throttle)
        && plan.policy.throttle == ThrottleMethod::DirtyLimit;
    if let (true, Some(facts)) = (wants_ring, facts) {
        rows.push(match facts.source.dirty_ring_size {
            Some(_) => Row::pass("source.dirty_ring", "the guest runs with the KVM dirty ring (needed by the dirty limit)"),
            None => Row::fail("source.dirty_ring", Problem::DirtyLimitNeedsRing.to_string(), "start QEMU with `-accel kvm,dirty-ring-size=4096`, or use policy.throttle = \"auto-converge\""),
        });
    }
    rows
}

fn viommu(plan: &Plan, src: &SideSurvey) -> Option<Row> {
    if plan.devices.is_empty() {
        return None;
    }
    Some(match src.viommu.as_slice() {
        [] => Row::pass("vm.viommu", "no guest IOMMU"),
        types => Row::warn(
            "vm.viommu",
            format!(
                "the guest has an IOMMU ({}) and VFIO devices: unmaps while dirty pages are tracked can lose dirty data, and QEMU may block migration",
                types.join(", ")
            ),
            "migrate without a guest IOMMU where you can, or test this VM's migration before relying on it",
        ),
    })
}

#[cfg(test)]
mod tests {
    //! Each `fail` row of the monitors' checks, produced from facts as QEMU reports
    //! them (the real-QEMU tests in `cli/tests/check_qemu.rs` produce the others).

    use super::*;
    use crate::driver::{DeviceSurvey, MigrationStatus, RunState, SideFacts};

    fn side(version: &str, run_state: RunState, migration: &str) -> SideFacts {
        SideFacts {
            version: version.into(),
            run_state,
            migration: MigrationStatus::parse(migration),
            blocked_reasons: Vec::new(),
            dirty_ring_size: None,
            kvm: true,
            ram_bytes: Some(1 << 30),
            migration_capabilities: None,
        }
    }

    fn survey(capabilities: &[&str], devices: &[(&str, &str)]) -> SideSurvey {
        SideSurvey {
            machine: Some("pc-i440fx-10.0".into()),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            devices: devices
                .iter()
                .map(|(id, enable)| DeviceSurvey {
                    id: id.to_string(),
                    type_name: "vfio-pci".into(),
                    enable_migration: Some(enable.to_string()),
                    migration_events: Some(true),
                    ..DeviceSurvey::default()
                })
                .collect(),
            ..SideSurvey::default()
        }
    }

    const ALL: &[&str] = &[
        "events",
        "pause-before-switchover",
        "return-path",
        "switchover-ack",
        "auto-converge",
        "dirty-limit",
    ];

    fn reading(source: SideFacts, destination: SideFacts) -> Reading {
        Reading {
            facts: Some(PairFacts { source, destination }),
            source: Some(survey(ALL, &[("gpu0", "on")])),
            destination: Some(survey(ALL, &[("gpu0", "on")])),
            ..Reading::default()
        }
    }

    fn ready() -> Reading {
        reading(
            side("10.0.2", RunState::Running, "none"),
            side("10.0.2", RunState::InMigrate, "none"),
        )
    }

    fn plan(extra: &str) -> Plan {
        let text = format!(
            "[vm]\nname = \"t\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n[[devices]]\nid = \"gpu0\"\nstate_size = \"64MiB\"\n{extra}"
        );
        plans::load("plan.toml", &text).expect("a valid plan")
    }

    fn status_of(rows: &[Row], id: &str) -> crate::check::Status {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| r.status)
            .unwrap_or_else(|| panic!("no row {id} in {rows:#?}"))
    }

    use crate::check::Status::{Fail, Pass};

    #[test]
    fn a_ready_pair_passes_every_monitor_row() {
        let rows = monitor_rows(&plan(""), &ready());
        let failing: Vec<&Row> = rows
            .iter()
            .filter(|r| r.status != Pass && r.status != crate::check::Status::Warn)
            .collect();
        assert!(failing.is_empty(), "{failing:#?}");
    }

    #[test]
    fn a_qemu_too_old_for_the_plans_devices_fails_its_side() {
        let r = reading(
            side("8.2.0", RunState::Running, "none"),
            side("10.0.2", RunState::InMigrate, "none"),
        );
        let rows = monitor_rows(&plan(""), &r);
        assert_eq!(status_of(&rows, "source.qemu_version"), Fail);
    }

    #[test]
    fn a_migration_already_under_way_fails_the_placement() {
        let r = reading(
            side("10.0.2", RunState::Running, "active"),
            side("10.0.2", RunState::InMigrate, "active"),
        );
        let rows = monitor_rows(&plan(""), &r);
        assert_eq!(status_of(&rows, "vm.placement"), Fail);
    }

    #[test]
    fn a_vm_already_on_the_destination_passes_the_placement_and_asks_nothing_of_the_destination() {
        let r = reading(
            side("10.0.2", RunState::PostMigrate, "completed"),
            side("10.0.2", RunState::Running, "completed"),
        );
        let rows = monitor_rows(&plan(""), &r);
        assert_eq!(status_of(&rows, "vm.placement"), Pass);
        assert!(rows.iter().all(|r| r.id != "destination.incoming"));
    }

    #[test]
    fn machine_types_that_differ_fail_with_both_named() {
        let mut r = ready();
        if let Some(d) = r.destination.as_mut() {
            d.machine = Some("pc-q35-10.0".into());
        }
        let rows = monitor_rows(&plan(""), &r);
        let row = rows.iter().find(|r| r.id == "vm.machine").expect("machine row");
        assert_eq!(row.status, Fail);
        assert!(row.finding.contains("pc-i440fx-10.0") && row.finding.contains("pc-q35-10.0"));
    }

    #[test]
    fn switchover_ack_missing_on_the_destination_fails_for_a_precopy_device() {
        let mut r = ready();
        r.destination = Some(survey(&["events", "return-path"], &[("gpu0", "on")]));
        let rows = monitor_rows(&plan(""), &r);
        let row = rows
            .iter()
            .find(|r| r.id == "capability.switchover-ack")
            .expect("row");
        assert_eq!(row.status, Fail);
        assert!(row.finding.contains("destination"), "{}", row.finding);
    }

    #[test]
    fn a_dirty_limit_without_the_dirty_ring_fails() {
        let rows = monitor_rows(&plan("[policy]\nthrottle = \"dirty-limit\"\n"), &ready());
        assert_eq!(status_of(&rows, "source.dirty_ring"), Fail);
    }

    #[test]
    fn a_device_with_migration_disabled_or_missing_on_the_destination_fails() {
        let mut r = ready();
        r.source = Some(survey(ALL, &[("gpu0", "off")]));
        r.destination = Some(survey(ALL, &[("nic1", "on")]));
        let rows = monitor_rows(&plan(""), &r);
        assert_eq!(status_of(&rows, "device.gpu0.enable_migration"), Fail);
        assert_eq!(status_of(&rows, "device.gpu0.destination"), Fail);
    }

    #[test]
    fn multifd_channels_need_multifd_on_both_sides() {
        let mut r = ready();
        r.destination = Some(survey(
            &["events", "return-path", "switchover-ack"],
            &[("gpu0", "on")],
        ));
        let rows = monitor_rows(&plan("[migration]\nmultifd_channels = 4\n"), &r);
        assert_eq!(status_of(&rows, "capability.multifd"), Fail);
    }

    #[test]
    fn a_guest_iommu_with_vfio_devices_warns_and_never_fails() {
        let mut r = ready();
        if let Some(s) = r.source.as_mut() {
            s.viommu = vec!["intel-iommu".into()];
        }
        let rows = monitor_rows(&plan(""), &r);
        assert_eq!(status_of(&rows, "vm.viommu"), crate::check::Status::Warn);
    }
}
