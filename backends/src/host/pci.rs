//! One device as sysfs shows it: a PCI function (`/sys/bus/pci/devices/<address>`) or
//! a mediated device (`/sys/bus/mdev/devices/<uuid>`).
//!
//! The layout read (Documentation/ABI/testing/sysfs-bus-pci, sysfs-bus-vfio-mdev,
//! Documentation/driver-api/vfio.rst):
//!
//! - `driver`: symlink to the bound driver (absent when unbound);
//! - `vendor`, `device`, `subsystem_vendor`, `subsystem_device`: `0x`-prefixed ids;
//! - `iommu_group`: symlink to `/sys/kernel/iommu_groups/<N>`; QEMU opens
//!   `/dev/vfio/<N>` (type1 container) or, with iommufd, the device's own node
//!   `vfio-dev/vfio<M>` → `/dev/vfio/devices/vfio<M>`;
//! - `iommu`: symlink to the IOMMU unit that translates the device (`dmar2`, `ivhd0`);
//! - `physfn`: a VF's physical function;
//! - for an mdev, `mdev_type` (symlink into the parent's `mdev_supported_types/<type>`,
//!   with a `name` file), and the parent device as the directory above it.
//!
//! vGPU-class devices (NVIDIA) add what must match across hosts: the vendor driver's
//! version (`/sys/module/nvidia/version`, the kernel module's `MODULE_VERSION`), the
//! board (the physical GPU's PCI ids: H100 PCIe and SXM, or 80 GB and 94 GB boards,
//! differ there), and the vGPU type (the mdev type, or on NVIDIA vGPU 17+ SR-IOV GPUs
//! the VF's `nvidia/current_vgpu_type`, named in `nvidia/creatable_vgpu_types`).

use std::fs;

use serde::{Deserialize, Serialize};

use super::drivers;
use super::tree::Tree;

/// What identifies a vGPU, to compare across hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vgpu {
    /// The vendor driver's version (`/sys/module/nvidia/version`), when readable.
    pub driver_version: Option<String>,
    /// The physical board: the physical GPU's PCI ids (`10de:2330 subsystem 10de:16c1`).
    pub board: Option<String>,
    /// The vGPU type (`nvidia-558 (GRID A100-4C)`, or `557 (NVIDIA L40S-24Q)`).
    pub vgpu_type: Option<String>,
}

/// One device, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    /// The PCI address (`0000:3b:00.1`) or mdev UUID.
    pub(crate) address: String,
    /// Where it lives in sysfs.
    pub(crate) sysfs: String,
    /// Whether it is a mediated device.
    pub(crate) mdev: bool,
    pub(crate) driver: Option<String>,
    pub(crate) vendor: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) iommu_group: Option<u32>,
    /// The IOMMU unit that translates it (for an mdev, its parent's).
    pub(crate) iommu_unit: Option<String>,
    /// Its iommufd character device (`vfio0`), when the kernel made one.
    pub(crate) cdev: Option<String>,
    pub(crate) vgpu: Option<Vgpu>,
}

/// What an address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// A PCI function, in full form (`0000:3b:00.1`).
    Pci(String),
    /// A mediated device's UUID, lower case.
    Mdev(String),
}

impl Address {
    /// Reads `0000:3b:00.1`, `3b:00.1` (domain 0) or an mdev UUID; `None` for anything
    /// else, so that no plan value can walk out of sysfs (`../..`).
    pub(crate) fn parse(text: &str) -> Option<Address> {
        let text = text.trim().to_ascii_lowercase();
        let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
        let uuid: Vec<&str> = text.split('-').collect();
        if uuid.len() == 5
            && [8, 4, 4, 4, 12]
                .iter()
                .zip(&uuid)
                .all(|(len, part)| hex(part, *len))
        {
            return Some(Address::Mdev(text));
        }
        let full = if text.matches(':').count() == 1 {
            format!("0000:{text}")
        } else {
            text
        };
        let (domain, rest) = full.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        let function_ok = function.len() == 1 && function.chars().all(|c| ('0'..='7').contains(&c));
        (hex(domain, 4) && hex(bus, 2) && hex(slot, 2) && function_ok).then_some(Address::Pci(full))
    }
}

/// The device at `address`, or `None` when sysfs has no such device.
pub(crate) fn read(tree: &Tree, address: &Address) -> Option<Device> {
    match address {
        Address::Pci(bdf) => read_pci(tree, bdf),
        Address::Mdev(uuid) => read_mdev(tree, uuid),
    }
}

fn read_pci(tree: &Tree, bdf: &str) -> Option<Device> {
    let sysfs = format!("/sys/bus/pci/devices/{bdf}");
    if !tree.is_dir(&sysfs) {
        return None;
    }
    let driver = tree.link_name(&format!("{sysfs}/driver"));
    let vgpu_type = vf_vgpu_type(tree, &sysfs);
    let vgpu = vgpu_type.map(|vgpu_type| Vgpu {
        driver_version: nvidia_version(tree),
        board: board(tree, &sysfs),
        vgpu_type: Some(vgpu_type),
    });
    Some(Device {
        address: bdf.to_string(),
        driver,
        vendor: id(tree, &format!("{sysfs}/vendor")),
        device: id(tree, &format!("{sysfs}/device")),
        iommu_group: group(tree, &sysfs),
        iommu_unit: tree.link_name(&format!("{sysfs}/iommu")),
        cdev: tree.entries(&format!("{sysfs}/vfio-dev")).into_iter().next(),
        vgpu,
        mdev: false,
        sysfs,
    })
}

fn read_mdev(tree: &Tree, uuid: &str) -> Option<Device> {
    let sysfs = format!("/sys/bus/mdev/devices/{uuid}");
    if !tree.is_dir(&sysfs) {
        return None;
    }
    // The mdev's directory sits under its parent device's.
    let parent = fs::canonicalize(tree.path(&sysfs))
        .ok()
        .and_then(|path| Some(path.parent()?.file_name()?.to_string_lossy().into_owned()))
        .and_then(|name| match Address::parse(&name) {
            Some(Address::Pci(bdf)) => Some(format!("/sys/bus/pci/devices/{bdf}")),
            _ => None,
        });
    let driver = tree.link_name(&format!("{sysfs}/driver"));
    let type_id = tree.link_name(&format!("{sysfs}/mdev_type"));
    let type_name = tree.read(&format!("{sysfs}/mdev_type/name"));
    let vgpu_type = match (type_id, type_name) {
        (Some(id), Some(name)) => Some(format!("{id} ({name})")),
        (Some(id), None) => Some(id),
        (None, name) => name,
    };
    let is_vgpu = driver
        .as_deref()
        .and_then(drivers::lookup)
        .is_some_and(|facts| facts.vgpu)
        || vgpu_type.as_deref().is_some_and(|t| t.starts_with("nvidia-"));
    let vgpu = is_vgpu.then(|| Vgpu {
        driver_version: nvidia_version(tree),
        board: parent.as_deref().and_then(|parent| board(tree, parent)),
        vgpu_type,
    });
    Some(Device {
        address: uuid.to_string(),
        driver,
        vendor: parent.as_deref().and_then(|p| id(tree, &format!("{p}/vendor"))),
        device: parent.as_deref().and_then(|p| id(tree, &format!("{p}/device"))),
        iommu_group: group(tree, &sysfs),
        iommu_unit: parent
            .as_deref()
            .and_then(|p| tree.link_name(&format!("{p}/iommu"))),
        cdev: tree.entries(&format!("{sysfs}/vfio-dev")).into_iter().next(),
        vgpu,
        mdev: true,
        sysfs,
    })
}

/// Every device a VM could be given through VFIO on this host: PCI functions bound to a
/// VFIO driver, NVIDIA VFs with a vGPU type, and mediated devices.
pub(crate) fn vfio_devices(tree: &Tree) -> Vec<Device> {
    let pci = tree
        .entries("/sys/bus/pci/devices")
        .into_iter()
        .filter_map(|bdf| {
            let device = read_pci(tree, &bdf)?;
            let vfio = device.driver.as_deref().is_some_and(drivers::is_vfio) || device.vgpu.is_some();
            vfio.then_some(device)
        });
    let mdev = tree
        .entries("/sys/bus/mdev/devices")
        .into_iter()
        .filter_map(|uuid| read_mdev(tree, &uuid));
    pci.chain(mdev).collect()
}

/// A PCI id without its `0x` (`15b3`).
fn id(tree: &Tree, path: &str) -> Option<String> {
    tree.read(path)
        .map(|text| text.trim_start_matches("0x").to_ascii_lowercase())
}

fn group(tree: &Tree, sysfs: &str) -> Option<u32> {
    tree.link_name(&format!("{sysfs}/iommu_group"))?.parse().ok()
}

/// A VF's vGPU type when NVIDIA's driver gave it one (`current_vgpu_type` not 0).
fn vf_vgpu_type(tree: &Tree, sysfs: &str) -> Option<String> {
    let current = tree.read(&format!("{sysfs}/nvidia/current_vgpu_type"))?;
    if current == "0" {
        return None;
    }
    let name = tree
        .read(&format!("{sysfs}/nvidia/creatable_vgpu_types"))
        .and_then(|list| {
            list.lines().find_map(|line| {
                let (id, name) = line.split_once(':')?;
                (id.trim() == current).then(|| name.trim().to_string())
            })
        });
    Some(match name {
        Some(name) => format!("{current} ({name})"),
        None => current,
    })
}

/// The NVIDIA vendor driver's version.
fn nvidia_version(tree: &Tree) -> Option<String> {
    tree.read("/sys/module/nvidia/version")
        .or_else(|| tree.read("/sys/module/nvidia_vgpu_vfio/version"))
}

/// The physical board behind a device: its physical function's ids (itself when it is
/// no VF).
fn board(tree: &Tree, sysfs: &str) -> Option<String> {
    let physical = if tree.exists(&format!("{sysfs}/physfn")) {
        format!("{sysfs}/physfn")
    } else {
        sysfs.to_string()
    };
    let vendor = id(tree, &format!("{physical}/vendor"))?;
    let device = id(tree, &format!("{physical}/device"))?;
    let subsystem = match (
        id(tree, &format!("{physical}/subsystem_vendor")),
        id(tree, &format!("{physical}/subsystem_device")),
    ) {
        (Some(sv), Some(sd)) => format!(" subsystem {sv}:{sd}"),
        _ => String::new(),
    };
    Some(format!("{vendor}:{device}{subsystem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_pci_functions_or_mdev_uuids_and_nothing_that_walks_out_of_sysfs() {
        assert_eq!(
            Address::parse("0000:3B:00.1"),
            Some(Address::Pci("0000:3b:00.1".into()))
        );
        assert_eq!(
            Address::parse("3b:00.1"),
            Some(Address::Pci("0000:3b:00.1".into()))
        );
        assert_eq!(
            Address::parse("2D3A3F00-633F-48D3-96F0-17466845E672"),
            Some(Address::Mdev("2d3a3f00-633f-48d3-96f0-17466845e672".into()))
        );
        for bad in [
            "",
            "../../etc",
            "0000:3b:00.8",
            "0000:3b:00",
            "3b:00.1/../..",
            "zzzz:3b:00.1",
        ] {
            assert_eq!(Address::parse(bad), None, "{bad:?}");
        }
    }
}
