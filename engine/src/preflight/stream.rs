//! What the plan's stream choices need from both sides: each capability it turns on
//! offered by the QEMU that must run it, and on every listed device the property that
//! chooses the channel for its state. (The versions each setting needs are in
//! `versions.rs`.)

use plans::{DeviceStateTransfer, MultifdCompression, Plan};

use crate::driver::{DeviceInfo, OnOffAuto, PairFacts, Side};

use super::Problem;

/// Every capability the plan's stream needs that a side does not offer. A side whose
/// capabilities the backend cannot tell is not judged.
pub(super) fn capability_problems(plan: &Plan, facts: &PairFacts) -> Vec<Problem> {
    let m = &plan.migration;
    let mut needs: Vec<(&'static str, &'static [Side], &'static str)> = Vec::new();
    if m.multifd_channels.is_some() {
        needs.push((
            "multifd",
            &[Side::Source, Side::Destination],
            "migration.multifd_channels",
        ));
    }
    if m.xbzrle_cache.is_some() {
        needs.push(("xbzrle", &[Side::Source], "migration.xbzrle_cache"));
    }
    let mut out = Vec::new();
    for (capability, sides, key) in needs {
        for side in sides {
            let facts = match side {
                Side::Source => &facts.source,
                Side::Destination => &facts.destination,
            };
            let Some(offered) = &facts.migration_capabilities else {
                continue;
            };
            if !offered.iter().any(|c| c == capability) {
                out.push(Problem::CapabilityMissing {
                    side: *side,
                    capability,
                    key,
                });
            }
        }
    }
    out
}

/// Devices that cannot be told which channel to use: they lack the property.
pub(super) fn device_problems(plan: &Plan, found: &[DeviceInfo]) -> Vec<Problem> {
    if plan.migration.device_state_transfer.is_none() {
        return Vec::new();
    }
    plan.devices
        .iter()
        .filter_map(|wanted| found.iter().find(|d| d.id == wanted.id))
        .filter(|d| d.multifd_transfer.is_none())
        .map(|d| Problem::DeviceTransferUnsupported { id: d.id.clone() })
        .collect()
}

/// The channel a device's state takes: the plan's choice when it makes one, else what
/// QEMU does with the property as found. `auto` takes the multifd channels when the
/// stream has them uncompressed (QEMU's `vfio_multifd_transfer_supported`); a device
/// without the property (QEMU before 10.0) sends its state on the main channel.
pub(super) fn device_transfer(plan: &Plan, property: Option<OnOffAuto>) -> DeviceStateTransfer {
    if let Some(chosen) = plan.migration.device_state_transfer {
        return chosen;
    }
    let m = &plan.migration;
    let multifd_can = m.multifd_channels.is_some() && m.multifd_compression == MultifdCompression::None;
    match property {
        Some(OnOffAuto::On) => DeviceStateTransfer::Multifd,
        Some(OnOffAuto::Auto) if multifd_can => DeviceStateTransfer::Multifd,
        _ => DeviceStateTransfer::Main,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(migration: &str) -> Plan {
        let text = format!(
            "[vm]\nname = \"t\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n[migration]\n{migration}\n[[devices]]\nid = \"gpu0\"\n"
        );
        plans::load("plan.toml", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn auto_sends_device_state_over_multifd_only_when_the_channels_do_not_compress() {
        let multifd = plan("multifd_channels = 4");
        let zstd = plan("multifd_channels = 4\nmultifd_compression = \"zstd\"");
        let single = plan("");
        let auto = Some(OnOffAuto::Auto);
        assert_eq!(device_transfer(&multifd, auto), DeviceStateTransfer::Multifd);
        assert_eq!(device_transfer(&zstd, auto), DeviceStateTransfer::Main);
        assert_eq!(device_transfer(&single, auto), DeviceStateTransfer::Main);
        assert_eq!(
            device_transfer(&multifd, Some(OnOffAuto::Off)),
            DeviceStateTransfer::Main
        );
        assert_eq!(device_transfer(&multifd, None), DeviceStateTransfer::Main);
    }

    #[test]
    fn the_plans_choice_is_the_channel_whatever_the_property_says() {
        let main = plan("multifd_channels = 4\ndevice_state_transfer = \"main\"");
        assert_eq!(
            device_transfer(&main, Some(OnOffAuto::Auto)),
            DeviceStateTransfer::Main
        );
    }
}
