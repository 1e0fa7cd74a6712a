//! One device of a plan on this host: is it there, can its driver migrate it, can
//! QEMU open it, and who will report the pages it writes.

use serde::{Deserialize, Serialize};

use engine::check::Row;

use super::drivers::{self, DirtyLog, DriverFacts, Migration};
use super::iommu::{self, Tracks, Unit};
use super::pci::{self, Address, Vgpu};
use super::Host;

/// Who reports the guest pages a device wrote by DMA during a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirtyTracking {
    /// The device logs its own DMA (`VFIO_DEVICE_FEATURE_DMA_LOGGING`).
    DeviceDmaLogging,
    /// The vendor (mdev-class) driver reports the pages.
    VendorDriver,
    /// The IOMMU tracks dirty pages, through iommufd.
    Iommu,
    /// The device does not log its DMA, and the kernel does not say whether its IOMMU
    /// can track (ARM SMMUv3 and others).
    Unknown,
    /// Nobody: QEMU must treat every mapped page as dirty on every pass.
    Neither,
}

/// What was read about one device of a plan on one host: what the checks compared,
/// kept so that the caller can weigh it against the plan (a device with
/// [`DirtyTracking::Neither`] is a `fail` when the plan's limits cannot absorb sending
/// all guest RAM at switchover) and compare it with the other host. It serialises to
/// JSON and back, so a `DeviceHost` read on a remote host can be compared here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHost {
    /// The device's id in the plan.
    pub plan_id: String,
    /// The address as the plan gave it, normalised when it could be read
    /// (`0000:3b:00.1`, or an mdev UUID).
    pub address: String,
    /// Whether the device exists on this host.
    pub present: bool,
    /// Whether it is a mediated device.
    pub mdev: bool,
    /// The bound driver as sysfs names it; `None` when unbound.
    pub driver: Option<String>,
    /// What the tool knows about that driver's migration support.
    pub migration: Option<Migration>,
    /// PCI vendor id (`15b3`); for an mdev, its parent's.
    pub vendor_id: Option<String>,
    /// PCI device id (`101e`); for an mdev, its parent's.
    pub device_id: Option<String>,
    /// The IOMMU group QEMU opens (`/dev/vfio/<group>`).
    pub iommu_group: Option<u32>,
    /// The IOMMU unit that translates the device (`dmar2`).
    pub iommu: Option<String>,
    /// Who will report the pages it writes.
    pub dirty_tracking: DirtyTracking,
    /// For vGPU-class devices: driver version, board and vGPU type.
    pub vgpu: Option<Vgpu>,
}

impl DeviceHost {
    /// Whether QEMU will have to send every mapped page on every pass: pre-copy cannot
    /// converge, and all guest RAM moves while the VM is paused.
    pub fn predicts_non_convergence(&self) -> bool {
        self.present && self.dirty_tracking == DirtyTracking::Neither
    }

    fn absent(plan_id: &str, address: &str) -> DeviceHost {
        DeviceHost {
            plan_id: plan_id.to_string(),
            address: address.to_string(),
            present: false,
            mdev: false,
            driver: None,
            migration: None,
            vendor_id: None,
            device_id: None,
            iommu_group: None,
            iommu: None,
            dirty_tracking: DirtyTracking::Neither,
            vgpu: None,
        }
    }
}

/// The checks for one device of a plan (`plan_id`, at `address`: a PCI address or an
/// mdev UUID) on this host, and what they read. Row ids are `device.<plan_id>.<check>`:
/// `present`, `driver`, `iommu_group`, `dev_vfio`, `dev_iommu`, `dirty_tracking`, and
/// `vgpu` for vGPU-class devices.
pub fn device_rows(host: &Host, plan_id: &str, address: &str) -> (Vec<Row>, DeviceHost) {
    let tree = &host.tree;
    let id = |check: &str| format!("device.{plan_id}.{check}");
    let Some(parsed) = Address::parse(address) else {
        let row = Row::fail(
            id("present"),
            format!("{address:?} is neither a PCI address (0000:3b:00.1) nor an mdev UUID"),
            "set the device's `host` in the plan to its PCI address as `lspci -D` shows it",
        );
        return (vec![row], DeviceHost::absent(plan_id, address));
    };
    let Some(device) = pci::read(tree, &parsed) else {
        let (normalised, place) = match &parsed {
            Address::Pci(bdf) => (bdf.clone(), "/sys/bus/pci/devices"),
            Address::Mdev(uuid) => (uuid.clone(), "/sys/bus/mdev/devices"),
        };
        let row = Row::fail(
            id("present"),
            format!("no device {normalised} on this host (nothing in {place})"),
            "check the plan's device address against `lspci -D` (or `mdevctl list`) on this host",
        );
        return (vec![row], DeviceHost::absent(plan_id, &normalised));
    };

    let units = iommu::units(tree);
    let facts = device.driver.as_deref().and_then(drivers::lookup);
    let dev_iommu = tree.exists("/dev/iommu");
    let (dirty, dirty_why) = dirty_tracking(facts, device.iommu_unit.as_deref(), &units, dev_iommu);
    let ids = match (&device.vendor, &device.device) {
        (Some(vendor), Some(dev)) => format!(" ({vendor}:{dev})"),
        _ => String::new(),
    };
    let name = format!("{}{ids}", device.address);

    let mut rows = vec![Row::pass(
        id("present"),
        format!("{name} is present ({})", device.sysfs),
    )];
    rows.push(driver_row(&id("driver"), &name, &device, facts));
    rows.push(group_row(host, &id("iommu_group"), &device));
    rows.push(dev_vfio_row(host, &id("dev_vfio")));
    rows.push(if dev_iommu {
        Row::pass(id("dev_iommu"), "/dev/iommu is present (iommufd)")
    } else {
        Row::warn(
            id("dev_iommu"),
            "no /dev/iommu: iommufd is not loaded, so the IOMMU cannot track dirty pages for QEMU",
            "modprobe iommufd (Linux 6.2+; IOMMU dirty tracking needs 6.7+)",
        )
    });
    rows.push(dirty_row(&id("dirty_tracking"), &name, dirty, &dirty_why));
    if let Some(vgpu) = &device.vgpu {
        rows.push(vgpu_row(&id("vgpu"), vgpu));
    }

    let read = DeviceHost {
        plan_id: plan_id.to_string(),
        address: device.address.clone(),
        present: true,
        mdev: device.mdev,
        driver: device.driver.clone(),
        migration: facts.map(DriverFacts::migration),
        vendor_id: device.vendor.clone(),
        device_id: device.device.clone(),
        iommu_group: device.iommu_group,
        iommu: device.iommu_unit.clone(),
        dirty_tracking: dirty,
        vgpu: device.vgpu.clone(),
    };
    (rows, read)
}

/// Who will report the device's dirty pages, and why.
pub(crate) fn dirty_tracking(
    facts: Option<&DriverFacts>,
    unit: Option<&str>,
    units: &[Unit],
    dev_iommu: bool,
) -> (DirtyTracking, String) {
    match facts.map(|facts| (facts.name, facts.dirty_log)) {
        Some((name, DirtyLog::Device)) => {
            return (
                DirtyTracking::DeviceDmaLogging,
                format!("the device logs its own DMA ({name})"),
            );
        }
        Some((name, DirtyLog::Vendor)) => {
            return (
                DirtyTracking::VendorDriver,
                format!("the vendor driver ({name}) reports the pages the device wrote"),
            );
        }
        _ => {}
    }
    let no_log = match facts {
        Some(facts) => format!("{} has no device DMA logging", facts.name),
        None => "the driver is not known to log DMA".to_string(),
    };
    // The unit that translates the device; without the link, every unit must agree.
    let serving: Vec<&Unit> = match unit {
        Some(name) => units.iter().filter(|u| u.name == name).collect(),
        None => units.iter().collect(),
    };
    if serving.is_empty() {
        return (
            DirtyTracking::Neither,
            format!("{no_log}, and no IOMMU is registered"),
        );
    }
    let describe = |list: &[&Unit]| {
        list.iter()
            .map(|u| format!("{} ({})", u.name, u.detail))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if serving.iter().all(|u| u.tracks == Tracks::Yes) {
        if dev_iommu {
            return (
                DirtyTracking::Iommu,
                format!(
                    "{no_log}; the IOMMU tracks dirty pages: {} (QEMU must open the device through iommufd: -object iommufd)",
                    describe(&serving)
                ),
            );
        }
        return (
            DirtyTracking::Neither,
            format!(
                "{no_log}; the IOMMU could track dirty pages ({}) but /dev/iommu is missing, and only iommufd uses that",
                describe(&serving)
            ),
        );
    }
    if serving.iter().any(|u| u.tracks == Tracks::No) {
        let not: Vec<&Unit> = serving.into_iter().filter(|u| u.tracks == Tracks::No).collect();
        return (
            DirtyTracking::Neither,
            format!(
                "{no_log}, and the IOMMU cannot track dirty pages: {}",
                describe(&not)
            ),
        );
    }
    (
        DirtyTracking::Unknown,
        format!(
            "{no_log}; whether the IOMMU can track dirty pages is unknown: {}",
            describe(&serving)
        ),
    )
}

fn driver_row(id: &str, name: &str, device: &pci::Device, facts: Option<&DriverFacts>) -> Row {
    let Some(driver) = device.driver.as_deref() else {
        return Row::fail(id, format!("{name} is bound to no driver"), bind_hint(device));
    };
    match facts {
        Some(facts) if facts.migrates => Row::pass(
            id,
            format!(
                "{name} is bound to {driver}, which migrates: {}",
                facts.features()
            ),
        ),
        Some(facts) => Row::fail(
            id,
            format!(
                "{name} is bound to {driver}, which cannot migrate ({})",
                facts.source
            ),
            if facts.name == "vfio_pci" {
                format!("plain vfio-pci never migrates: {}", bind_hint(device))
            } else {
                "this device cannot be live-migrated; move the VM cold (shut down, start on the destination)"
                    .to_string()
            },
        ),
        None if drivers::is_vfio(driver) => Row::warn(
            id,
            format!(
                "{name} is bound to {driver}, which this tool does not know: whether it migrates is unknown"
            ),
            "start the VM and read QEMU's `blocked-reasons` (`vfio-migrate check` shows them)",
        ),
        None => Row::fail(
            id,
            format!("{name} is bound to {driver}, a host driver: QEMU cannot assign it"),
            bind_hint(device),
        ),
    }
}

/// How to find and bind the variant driver for a device: `modules.alias` names the
/// variant driver that claims each device id (`alias vfio_pci:v000015B3d0000101E...`).
fn bind_hint(device: &pci::Device) -> String {
    let find = match (&device.vendor, &device.device) {
        (Some(vendor), Some(dev)) => format!(
            "find the variant driver for {vendor}:{dev} with `grep -i 'vfio_pci:v0000{vendor}d0000{dev}' /lib/modules/$(uname -r)/modules.alias`, then "
        ),
        _ => String::new(),
    };
    format!(
        "{find}bind the device to that migration-capable variant driver: `driverctl set-override {} <driver>` (mlx5_vfio_pci for a ConnectX VF)",
        device.address
    )
}

fn group_row(host: &Host, id: &str, device: &pci::Device) -> Row {
    let tree = &host.tree;
    let Some(group) = device.iommu_group else {
        return Row::fail(
            id,
            format!("{} has no IOMMU group: no IOMMU translates it", device.address),
            "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on)",
        );
    };
    let node = format!("/dev/vfio/{group}");
    let cdev = device
        .cdev
        .as_ref()
        .map(|cdev| format!("/dev/vfio/devices/{cdev}"))
        .filter(|path| tree.exists(path));
    match (tree.exists(&node), cdev) {
        (true, Some(cdev)) => Row::pass(id, format!("IOMMU group {group}: {node} and {cdev} are present")),
        (true, None) => Row::pass(id, format!("IOMMU group {group}: {node} is present")),
        (false, Some(cdev)) => Row::pass(id, format!("IOMMU group {group}: {cdev} is present (iommufd)")),
        (false, None) => {
            let others: Vec<String> = tree
                .entries(&format!("/sys/kernel/iommu_groups/{group}/devices"))
                .into_iter()
                .filter(|member| *member != device.address)
                .map(|member| {
                    let driver = tree
                        .link_name(&format!("/sys/bus/pci/devices/{member}/driver"))
                        .unwrap_or_else(|| "no driver".to_string());
                    format!("{member} ({driver})")
                })
                .collect();
            let sharing = if others.is_empty() {
                String::new()
            } else {
                format!("; the group also holds {}", others.join(", "))
            };
            Row::fail(
                id,
                format!("IOMMU group {group} has no {node}{sharing}"),
                format!(
                    "bind every device of group {group} to a VFIO driver (or leave it unbound); see /sys/kernel/iommu_groups/{group}/devices"
                ),
            )
        }
    }
}

/// `/dev/vfio`: shared by the host and device checks.
pub(crate) fn dev_vfio_row(host: &Host, id: &str) -> Row {
    let tree = &host.tree;
    if tree.exists("/dev/vfio/vfio") {
        Row::pass(id, "/dev/vfio/vfio is present (VFIO container)")
    } else if tree.exists("/dev/vfio/devices") && tree.exists("/dev/iommu") {
        Row::pass(
            id,
            "/dev/vfio/devices is present (VFIO device nodes for iommufd; no type1 container)",
        )
    } else if tree.exists("/dev/vfio") {
        Row::fail(
            id,
            "/dev/vfio exists but has neither the container /dev/vfio/vfio nor iommufd device nodes",
            "modprobe vfio-pci (and iommufd), and check `dmesg | grep -i vfio`",
        )
    } else {
        Row::fail(
            id,
            "no /dev/vfio: VFIO is not loaded, so QEMU cannot open any VFIO device",
            "modprobe vfio-pci, then bind the devices to their VFIO drivers",
        )
    }
}

fn dirty_row(id: &str, name: &str, dirty: DirtyTracking, why: &str) -> Row {
    match dirty {
        DirtyTracking::DeviceDmaLogging | DirtyTracking::VendorDriver | DirtyTracking::Iommu => {
            Row::pass(id, format!("{name}: {why}"))
        }
        DirtyTracking::Unknown => Row::warn(
            id,
            format!("{name}: {why}"),
            "start the VM and read QEMU's `blocked-reasons`: QEMU says \"VFIO device doesn't support device and IOMMU dirty tracking\" when neither works",
        ),
        DirtyTracking::Neither => Row::warn(
            id,
            format!(
                "{name}: {why}; QEMU will treat every mapped page as dirty on every pass: predicted non-convergence (all guest RAM moves while the VM is paused)"
            ),
            "use a host whose IOMMU tracks dirty pages (Intel SSADS, AMD HDSup) with iommufd, or a device with DMA logging; otherwise the plan's downtime must cover sending all guest RAM",
        ),
    }
}

fn vgpu_row(id: &str, vgpu: &Vgpu) -> Row {
    let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "unreadable".to_string());
    let finding = format!(
        "vGPU: driver {}, board {}, type {}",
        show(&vgpu.driver_version),
        show(&vgpu.board),
        show(&vgpu.vgpu_type)
    );
    if vgpu.driver_version.is_none() || vgpu.board.is_none() {
        return Row::warn(
            id,
            finding,
            "load the NVIDIA vGPU manager (/sys/module/nvidia/version) so both hosts can be compared",
        );
    }
    Row::pass(id, finding)
}
