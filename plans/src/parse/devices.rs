//! The `[[devices]]` array: the VFIO devices the VM owns.

use toml::de::{DeTable, DeValue};

use crate::defaults;
use crate::diagnostic::Diagnostic;
use crate::model::Device;
use crate::reader::{Mistakes, TableReader};
use crate::text::quoted;

pub(super) fn read_devices(top: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Vec<Device>> {
    if !top.has("devices") {
        return Some(Vec::new());
    }
    let (items, _) = top.array(m, "devices")?;
    let mut devices = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("devices[{i}]");
        let DeValue::Table(t) = item.get_ref() else {
            m.push(
                Diagnostic::new(path, item.span(), "expected a table")
                    .hint("list devices as [[devices]] tables with `id = \"...\"`"),
            );
            ok = false;
            continue;
        };
        match read_device(path, t, item.span(), m) {
            Some(device) => devices.push(device),
            None => ok = false,
        }
    }
    ok.then_some(devices)
}

fn read_device(path: String, t: &DeTable<'_>, s: std::ops::Range<usize>, m: &mut Mistakes) -> Option<Device> {
    let r = TableReader::new(
        path.clone(),
        t,
        s,
        &[
            "id",
            "host",
            "destination_host",
            "destination_mdev",
            "precopy",
            "state_size",
        ],
    );
    let id = r.name(m, "id", "hostdev0");
    if id.is_none() && !r.has("id") {
        r.missing(m, "id", "give the device's QOM id, e.g. `id = \"hostdev0\"`");
    }
    let host = r.string(m, "host");
    if let Some(h) = &host {
        if !is_pci_address(&h.value) {
            m.push(
                Diagnostic::new(
                    format!("{path}.host"),
                    h.span.clone(),
                    format!("{} is not a PCI address", quoted(&h.value)),
                )
                .hint("write the full address as sysfs shows it, e.g. \"0000:3b:00.1\""),
            );
        }
    }
    let destination_host = r.string(m, "destination_host");
    let destination_host = match destination_host {
        Some(h) if !is_pci_address(&h.value) => {
            m.push(
                Diagnostic::new(
                    format!("{path}.destination_host"),
                    h.span.clone(),
                    format!("{} is not a PCI address", quoted(&h.value)),
                )
                .hint("write the destination host's address as sysfs shows it there, e.g. \"0000:5e:00.3\""),
            );
            None
        }
        // Hex digits in either case name the same device; one spelling compares equal.
        h => h.map(|h| h.value.to_ascii_lowercase()),
    };
    let destination_mdev = match r.string(m, "destination_mdev") {
        Some(u) if !is_uuid(&u.value) => {
            m.push(
                Diagnostic::new(
                    format!("{path}.destination_mdev"),
                    u.span.clone(),
                    format!("{} is not a mediated device's UUID", quoted(&u.value)),
                )
                .hint("write the UUID as `mdevctl list` or sysfs shows it there, e.g. \"4b20d080-1b54-4048-85b3-a6a62d165c01\""),
            );
            None
        }
        Some(u) if destination_host.is_some() => {
            m.push(
                Diagnostic::new(
                    format!("{path}.destination_mdev"),
                    u.span.clone(),
                    "`destination_host` and `destination_mdev` cannot both be set".to_string(),
                )
                .hint("a PCI device (a VF, a whole GPU) is named by its address, a vGPU by its UUID: keep the one this device is"),
            );
            None
        }
        u => u.map(|u| u.value.to_ascii_lowercase()),
    };
    let precopy = r.boolean(m, "precopy");
    let state_size = r.bytes(m, "state_size", "512MiB");
    r.finish(m);
    Some(Device {
        id: id?.value,
        host: host.map(|h| h.value),
        destination_host,
        destination_mdev,
        precopy: precopy.map_or(defaults::devices::PRECOPY, |p| p.value),
        state_size: state_size.map(|s| s.value),
    })
}

/// 8-4-4-4-12 hexadecimal digits, as mdev UUIDs are written.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_pci_address(text: &str) -> bool {
    // DDDD:BB:DD.F, hexadecimal, as sysfs names devices.
    let b = text.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && (b'0'..=b'7').contains(&b[11])
}

#[cfg(test)]
mod tests {
    use super::is_pci_address;

    #[test]
    fn a_pci_address_is_written_in_full_as_sysfs_shows_it() {
        assert!(is_pci_address("0000:3b:00.1"));
        assert!(!is_pci_address("3b:00.1"));
        assert!(!is_pci_address("0000:3b:00.8"));
        assert!(!is_pci_address("0000:3g:00.1"));
        assert!(!is_pci_address("0000:3b:00.1 "));
    }
}
