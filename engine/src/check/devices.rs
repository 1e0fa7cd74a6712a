//! The plan's VFIO devices as both QEMUs show them: present, followed, allowed to
//! migrate, and on the destination too. What the kernel driver can do is the host
//! probes' part.

use plans::Plan;

use crate::driver::SideSurvey;
use crate::preflight::{self, Problem};

use super::read::Reading;
use super::Row;

/// QEMU counts a device whose stop-copy size it cannot read as this much still to send
/// (`hw/vfio/migration.c`, `VFIO_MIG_STOP_COPY_SIZE`): such a migration never converges
/// under any sane downtime.
pub const UNKNOWN_STOP_COPY_BYTES: u64 = 100 << 30;

/// Rows for each device of the plan and each VFIO device the plan does not list.
pub fn device_rows(plan: &Plan, reading: &Reading, src: &SideSurvey) -> Vec<Row> {
    let found = reading.source_devices();
    let check = preflight::devices(plan, &found);
    let mut rows: Vec<Row> = check.problems.iter().map(problem_row).collect();
    for (id, _) in &check.enable_events {
        rows.push(Row::fail(
            format!("device.{id}.migration_events"),
            format!("migration-events is off on the source: the tool cannot follow {id}'s states, and QEMU refuses to turn it on once the device is realized"),
            format!("start QEMU with `-device vfio-pci,...,id={id},migration-events=on`"),
        ));
    }
    for note in &check.notes {
        rows.push(Row::warn(
            "devices.unlisted",
            note.clone(),
            "list the device in [[devices]] so the tool follows it",
        ));
    }
    for device in &plan.devices {
        let Some(dev) = src.devices.iter().find(|d| d.id == device.id) else {
            continue;
        };
        if dev.migration_events == Some(true) {
            rows.push(Row::pass(
                format!("device.{}.migration_events", device.id),
                "migration-events on: its states can be followed",
            ));
        }
        rows.push(enable_migration(&device.id, dev.enable_migration.as_deref()));
        rows.push(on_destination(&device.id, reading));
        rows.push(state_size(&device.id, device.state_size.map(|s| s.0)));
    }
    rows
}

fn problem_row(problem: &Problem) -> Row {
    let (id, hint) = match problem {
        Problem::DeviceMissing { id, .. } => (
            format!("device.{id}.present"),
            "check the id: it is `-device vfio-pci,id=...` (libvirt: the hostdev's alias)".to_string(),
        ),
        Problem::DeviceEventsUnsupported { id } => (
            format!("device.{id}.migration_events"),
            "upgrade QEMU on the source to 9.1 or newer".to_string(),
        ),
        Problem::UnlistedDevice { id, .. } => (
            format!("device.{id}.listed"),
            "add a [[devices]] entry for it, or set vm.allow_unlisted_devices = true".to_string(),
        ),
        Problem::DeviceTransferUnsupported { id } => (
            format!("device.{id}.state_transfer"),
            "drop migration.device_state_transfer, or upgrade QEMU to 10.0 on both sides".to_string(),
        ),
        other => ("devices".to_string(), other.to_string()),
    };
    Row::fail(id, problem.to_string(), hint)
}

fn enable_migration(id: &str, value: Option<&str>) -> Row {
    let row_id = format!("device.{id}.enable_migration");
    match value {
        Some("off") => Row::fail(
            row_id,
            "enable-migration=off: QEMU blocks migration of this device",
            format!("start QEMU with `-device vfio-pci,...,id={id},enable-migration=on` on a migration-capable driver"),
        ),
        Some(v) => Row::pass(row_id, format!("enable-migration={v} (QEMU migrates it when its kernel driver can)")),
        None => Row::warn(row_id, "enable-migration not readable", "check the device's QEMU options"),
    }
}

fn on_destination(id: &str, reading: &Reading) -> Row {
    let row_id = format!("device.{id}.destination");
    match &reading.destination {
        Some(dst) if dst.devices.iter().any(|d| d.id == id) => {
            Row::pass(row_id, "the destination QEMU has a VFIO device with the same id")
        }
        Some(dst) => Row::fail(
            row_id,
            format!(
                "the destination QEMU has no VFIO device {id} (its VFIO devices: {})",
                names(dst)
            ),
            "start the destination with the same `-device vfio-pci,...,id=` as the source, on a device of the same kind",
        ),
        None => Row::warn(row_id, "the destination could not be read", "see destination.reachable"),
    }
}

fn names(side: &SideSurvey) -> String {
    match side.devices.is_empty() {
        true => "none".into(),
        false => side
            .devices
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn state_size(id: &str, declared: Option<u64>) -> Row {
    let row_id = format!("device.{id}.state_size");
    match declared {
        Some(bytes) => Row::pass(row_id, format!("declared stop-copy state {} MiB (counted in every downtime estimate)", bytes >> 20)),
        None => Row::warn(
            row_id,
            format!(
                "no state_size declared: predictions count none; QMP does not report it, and if the kernel driver cannot report it either, QEMU counts {} GiB still to send and the migration never converges",
                UNKNOWN_STOP_COPY_BYTES >> 30
            ),
            "declare the device's stop-copy size (`state_size` in its [[devices]] entry); the vendor documents it, or measure it with a test migration",
        ),
    }
}
