//! A plan's devices against this host's kernel, for one side: each device's own rows
//! (`device_rows`), renamed with the side so both hosts' rows can share a list, and
//! what only the plan can add: whether the devices can converge at all, whether
//! pre-copy is as the plan declares it, and whether several devices can all do P2P.

use engine::check::Row;
use engine::driver::{Side, SideSurvey};
use plans::{Plan, Step};

use super::drivers::Support;
use super::{compare_across_hosts, device_rows, DeviceHost, Host};

/// This host's rows for each device of the plan on `side`, and what it read of them.
/// A device's address comes from that side's QEMU (its `host` property), else, on the
/// source, from the plan.
pub fn plan_rows(
    plan: &Plan,
    host: &Host,
    side: Side,
    survey: Option<&SideSurvey>,
) -> (Vec<Row>, Vec<DeviceHost>) {
    let mut rows = Vec::new();
    let mut found = Vec::new();
    for device in &plan.devices {
        let from_qemu = survey
            .and_then(|s| s.devices.iter().find(|d| d.id == device.id))
            .and_then(|d| d.host.clone());
        let from_plan = device.host.clone().filter(|_| side == Side::Source);
        let Some(address) = from_qemu.or(from_plan) else {
            rows.push(Row::warn(
                format!("device.{}.{side}_host", device.id),
                format!("the {side} host's address for {} is not known: its QEMU did not say, and the plan's `host` is the source's", device.id),
                format!("make the {side} monitor reachable from here, or run check where it is"),
            ));
            continue;
        };
        let (mut own, facts) = device_rows(host, &device.id, &address);
        if facts.predicts_non_convergence() {
            own.push(no_dirty_tracking(plan, &device.id));
        }
        own.extend(precopy(&device.id, device.precopy, &facts));
        for row in &mut own {
            let prefix = format!("device.{}.", device.id);
            row.id = row.id.replacen(&prefix, &format!("{prefix}{side}."), 1);
        }
        rows.extend(own);
        found.push(facts);
    }
    rows.extend(p2p(side, &found));
    (rows, found)
}

/// Both hosts' view of the same devices, compared (a vGPU must match in driver
/// version, board and type).
pub fn across_hosts(source: &[DeviceHost], destination: &[DeviceHost]) -> Vec<Row> {
    source
        .iter()
        .filter_map(|s| {
            let d = destination.iter().find(|d| d.plan_id == s.plan_id)?;
            compare_across_hosts(s, d)
        })
        .collect()
}

/// A device QEMU cannot track dirty pages for: every mapped page is dirty on every
/// pass, so pre-copy cannot converge; only forcing all of RAM into the pause finishes.
fn no_dirty_tracking(plan: &Plan, id: &str) -> Row {
    let finding = format!("{id} has neither device DMA logging nor IOMMU dirty tracking: QEMU counts every mapped page dirty on every pass, so pre-copy cannot converge");
    let hint = "use a host whose IOMMU tracks dirty pages (iommufd) or a driver with DMA logging";
    let id = format!("device.{id}.converges");
    match plan.policy.escalation.contains(&Step::ForceDowntime) {
        true => Row::warn(
            id,
            format!("{finding}; only force-downtime, with all of guest RAM in the pause, can finish it"),
            hint,
        ),
        false => Row::fail(
            id,
            format!("{finding}, and the plan's escalation has no force-downtime"),
            hint,
        ),
    }
}

/// Pre-copy as the plan declares it against what the driver offers. A plan that
/// declares pre-copy for a driver without it waits for states that never come; one that
/// leaves it out for a driver with it only loses the early transfer.
fn precopy(id: &str, declared: bool, facts: &DeviceHost) -> Option<Row> {
    let offered = facts.migration.as_ref().filter(|m| m.migrates)?.precopy;
    let row_id = format!("device.{id}.precopy");
    let driver = facts.driver.as_deref().unwrap_or("its driver");
    Some(match (declared, offered) {
        (true, Support::No) => Row::fail(
            row_id,
            format!("the plan declares precopy = true, but {driver} has no pre-copy: the device saves only at switchover"),
            format!("set precopy = false for {id}"),
        ),
        (false, Support::Yes) => Row::warn(
            row_id,
            format!("{driver} offers pre-copy, but the plan declares precopy = false: its state all moves while the guest is paused"),
            format!("set precopy = true for {id}"),
        ),
        (_, Support::Firmware | Support::Vendor) => Row::warn(
            row_id,
            format!("whether {driver} offers pre-copy depends on the device's firmware or vendor driver; the plan declares precopy = {declared}"),
            "confirm with the vendor, or with a test migration's device timeline",
        ),
        _ => Row::pass(row_id, format!("precopy = {declared}, as {driver} offers")),
    })
}

/// With more than one device, every device must support P2P (QEMU moves them through
/// the P2P states so that none is stopped while another still writes to it).
fn p2p(side: Side, found: &[DeviceHost]) -> Option<Row> {
    if found.len() < 2 {
        return None;
    }
    let id = format!("devices.{side}.p2p");
    let support = |d: &DeviceHost| d.migration.as_ref().map(|m| m.p2p);
    let without: Vec<&str> = found
        .iter()
        .filter(|d| matches!(support(d), Some(Support::No) | None))
        .map(|d| d.plan_id.as_str())
        .collect();
    let unknown: Vec<&str> = found
        .iter()
        .filter(|d| matches!(support(d), Some(Support::Firmware | Support::Vendor)))
        .map(|d| d.plan_id.as_str())
        .collect();
    Some(match (without.is_empty(), unknown.is_empty()) {
        (false, _) => Row::fail(
            id,
            format!("{} devices, and {} without P2P support: QEMU cannot move several devices safely unless all of them support P2P", found.len(), without.join(", ")),
            "migrate with one VFIO device, or use drivers with P2P",
        ),
        (true, false) => Row::warn(
            id,
            format!("{} devices; whether {} support P2P depends on firmware or the vendor driver", found.len(), unknown.join(", ")),
            "confirm P2P support with the vendor",
        ),
        (true, true) => Row::pass(id, format!("all {} devices support P2P", found.len())),
    })
}
