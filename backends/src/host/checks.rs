//! `vfio-migrate check --host`: is this host ready to send or receive VFIO migrations
//! at all? What `virt-host-validate` does for virtualization, done for migration.

use engine::check::Row;

use super::device::dev_vfio_row;
use super::drivers;
use super::iommu::{self, Kind, Tracks};
use super::kvm::{self, DirtyRing};
use super::pci;
use super::tools;
use super::Host;

/// Every host check, in a fixed order: KVM, IOMMU, modules, device nodes, the VFIO
/// devices, QEMU and libvirt. Row ids are listed in docs/check.md.
pub fn host_rows(host: &Host) -> Vec<Row> {
    let mut rows = vec![kvm_row(host), dirty_ring_row(host)];
    rows.extend(iommu_rows(host));
    rows.extend(module_rows(host));
    rows.push(dev_vfio_row(host, "host.dev.vfio"));
    rows.push(dev_iommu_row(host));
    rows.extend(device_rows(host));
    rows.push(tools::qemu_row(&host.tree));
    rows.push(tools::libvirt_row(&host.tree));
    rows
}

fn kvm_row(host: &Host) -> Row {
    if host.tree.exists("/dev/kvm") {
        Row::pass("host.kvm", "/dev/kvm is present")
    } else {
        Row::fail(
            "host.kvm",
            "no /dev/kvm: this host cannot run KVM guests",
            "enable virtualization (VT-x / AMD-V) in the firmware and load kvm_intel or kvm_amd",
        )
    }
}

fn dirty_ring_row(host: &Host) -> Row {
    const ID: &str = "host.kvm.dirty_ring";
    const NO_RING: &str = "policy.throttle = \"dirty-limit\" and dirty-ring rate measurements need it";
    if !host.tree.exists("/dev/kvm") {
        return Row::warn(ID, "not probed: there is no /dev/kvm", "see host.kvm");
    }
    let ring = if host.tree.is_real_root() {
        kvm::dirty_ring(&host.tree.path("/dev/kvm"))
    } else {
        DirtyRing::NotProbed
    };
    match ring {
        DirtyRing::Offered { max_bytes, capability } => Row::pass(
            ID,
            format!("KVM offers the dirty ring ({capability}, rings up to {max_bytes} bytes)"),
        ),
        DirtyRing::NotOffered => Row::warn(
            ID,
            format!("KVM offers no dirty ring; {NO_RING}"),
            "use policy.throttle = \"auto-converge\", or a kernel with the dirty ring (Linux 5.11+ on x86)",
        ),
        DirtyRing::NotProbed => Row::warn(
            ID,
            format!(
                "not probed: the root {} is not this machine's /, and the dirty ring is asked of KVM by ioctl",
                host.tree.root().display()
            ),
            "run the host check on the host itself (root /)",
        ),
        DirtyRing::Failed(why) => Row::warn(
            ID,
            format!("could not ask KVM: {why}"),
            "run the check as root or as a member of the kvm group",
        ),
    }
}

fn iommu_rows(host: &Host) -> Vec<Row> {
    let units = iommu::units(&host.tree);
    if units.is_empty() {
        return vec![
            Row::fail(
                "host.iommu",
                "no IOMMU is registered (/sys/class/iommu is empty): VFIO cannot assign devices",
                "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on)",
            ),
            Row::warn(
                "host.iommu.dirty_tracking",
                "no IOMMU, so no IOMMU dirty tracking",
                "see host.iommu",
            ),
        ];
    }
    let names: Vec<String> = units
        .iter()
        .map(|u| format!("{} ({})", u.name, u.kind.word()))
        .collect();
    let enabled = Row::pass(
        "host.iommu",
        format!("{} IOMMU unit(s): {}", units.len(), names.join(", ")),
    );
    let detail = |tracks: Tracks| {
        units
            .iter()
            .filter(|u| u.tracks == tracks)
            .map(|u| format!("{}: {}", u.name, u.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let any = |tracks: Tracks| units.iter().any(|u| u.tracks == tracks);
    let tracking = if !any(Tracks::No) && !any(Tracks::Unknown) {
        Row::pass(
            "host.iommu.dirty_tracking",
            format!("every IOMMU unit can track dirty pages ({})", detail(Tracks::Yes)),
        )
    } else if any(Tracks::No) {
        Row::warn(
            "host.iommu.dirty_tracking",
            format!(
                "IOMMU dirty tracking unavailable on {}: devices without their own DMA logging (virtio_vfio_pci, qat_vfio_pci, ...) behind these units cannot converge",
                detail(Tracks::No)
            ),
            "put such devices behind an IOMMU with dirty tracking (Intel SSADS, AMD HDSup), or use devices with DMA logging (mlx5_vfio_pci, pds_vfio_pci)",
        )
    } else {
        let kinds: Vec<&str> = units
            .iter()
            .filter(|u| u.tracks == Tracks::Unknown)
            .map(|u| u.kind.word())
            .collect();
        let smmu = units.iter().any(|u| u.kind == Kind::SmmuV3);
        Row::warn(
            "host.iommu.dirty_tracking",
            format!(
                "unknown: the kernel does not say whether {} can track dirty pages ({})",
                kinds.join(", "),
                detail(Tracks::Unknown)
            ),
            if smmu {
                "SMMUv3 tracks dirty pages only with hardware dirty-state updates (HTTU); check the SoC's documentation, or start a VM and read QEMU's blocked-reasons"
            } else {
                "start a VM and read QEMU's blocked-reasons, which say when neither the device nor the IOMMU can track"
            },
        )
    };
    vec![enabled, tracking]
}

/// `vfio`, `vfio_pci` and `iommufd`: present in `/sys/module` when loaded (or built in
/// with parameters).
fn module_rows(host: &Host) -> Vec<Row> {
    let tree = &host.tree;
    let loaded = |module: &str| tree.is_dir(&format!("/sys/module/{module}"));
    let mut rows = Vec::new();
    for (module, hint) in [
        ("vfio", "modprobe vfio-pci (which loads vfio)"),
        ("vfio_pci", "modprobe vfio-pci"),
    ] {
        rows.push(if loaded(module) {
            Row::pass(format!("host.modules.{module}"), format!("{module} is loaded"))
        } else {
            Row::warn(
                format!("host.modules.{module}"),
                format!("{module} is not loaded"),
                hint,
            )
        });
    }
    rows.push(if loaded("iommufd") {
        Row::pass("host.modules.iommufd", "iommufd is loaded")
    } else if tree.exists("/dev/iommu") {
        Row::pass(
            "host.modules.iommufd",
            "iommufd is built in (/dev/iommu is present)",
        )
    } else {
        Row::warn(
            "host.modules.iommufd",
            "iommufd is not loaded: IOMMU dirty tracking is unavailable to QEMU",
            "modprobe iommufd (Linux 6.2+; dirty tracking 6.7+)",
        )
    });
    rows
}

fn dev_iommu_row(host: &Host) -> Row {
    if host.tree.exists("/dev/iommu") {
        Row::pass("host.dev.iommu", "/dev/iommu is present (iommufd)")
    } else {
        Row::warn(
            "host.dev.iommu",
            "no /dev/iommu: devices that rely on IOMMU dirty tracking (virtio_vfio_pci and others without DMA logging) cannot converge",
            "modprobe iommufd (Linux 6.2+; dirty tracking 6.7+)",
        )
    }
}

/// `host.devices` and one `host.device.<address>.driver` per VFIO device.
fn device_rows(host: &Host) -> Vec<Row> {
    let devices = pci::vfio_devices(&host.tree);
    if devices.is_empty() {
        return vec![Row::warn(
            "host.devices",
            "no VFIO devices on this host: no PCI device is bound to vfio-pci or a variant driver, and there is no mediated device",
            "bind each device to pass through to its variant driver, e.g. `driverctl set-override 0000:3b:00.1 mlx5_vfio_pci`",
        )];
    }
    let listed: Vec<String> = devices
        .iter()
        .map(|d| format!("{} ({})", d.address, d.driver.as_deref().unwrap_or("no driver")))
        .collect();
    let mut rows = vec![Row::pass(
        "host.devices",
        format!("{} VFIO device(s): {}", devices.len(), listed.join(", ")),
    )];
    for device in &devices {
        let id = format!("host.device.{}.driver", device.address);
        let driver = device.driver.as_deref().unwrap_or("no driver");
        let ids = match (&device.vendor, &device.device) {
            (Some(vendor), Some(dev)) => format!(" ({vendor}:{dev})"),
            _ => String::new(),
        };
        rows.push(match device.driver.as_deref().and_then(drivers::lookup) {
            Some(facts) if facts.migrates => Row::pass(
                id,
                format!("{}{ids}: {driver} migrates: {}", device.address, facts.features()),
            ),
            Some(facts) => Row::warn(
                id,
                format!(
                    "{}{ids}: {driver} cannot migrate ({})",
                    device.address, facts.source
                ),
                "a VM with this device cannot be live-migrated; bind it to its variant driver if it has one",
            ),
            None => Row::warn(
                id,
                format!(
                    "{}{ids}: {driver} is not known to this tool; whether it migrates is unknown",
                    device.address
                ),
                "start a VM with it and read QEMU's blocked-reasons",
            ),
        });
    }
    rows
}
