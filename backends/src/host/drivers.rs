//! What each VFIO driver can do for migration: the tool's knowledge table.
//!
//! sysfs names the driver a device is bound to, but not whether that driver implements
//! `VFIO_DEVICE_FEATURE_MIGRATION` or with which flags; a driver declares those in its
//! source (`migration_flags`, and `log_ops` for device DMA logging). So the table below
//! holds what mainline's drivers declare, each row with where it was read. A driver not
//! in the table is reported as unknown, never guessed.
//!
//! Names are matched with `-` and `_` treated alike: a driver registers under
//! `KBUILD_MODNAME` (underscores, `mlx5_vfio_pci`) or a literal (`vfio-pci`,
//! `xe-vfio-pci`), and operators write either.

use serde::{Deserialize, Serialize};

/// Whether a driver has a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// Declared by the driver.
    Yes,
    /// Not declared.
    No,
    /// Declared when the device's firmware offers it; sysfs does not say.
    Firmware,
    /// Up to a vendor driver outside mainline; sysfs does not say.
    Vendor,
}

impl Support {
    fn word(self) -> &'static str {
        match self {
            Support::Yes => "yes",
            Support::No => "no",
            Support::Firmware => "if the firmware offers it",
            Support::Vendor => "per the vendor driver",
        }
    }
}

/// Who can report the pages a device wrote by DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirtyLog {
    /// The device logs its own DMA (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`, the driver's
    /// `log_ops`).
    Device,
    /// A vendor (mdev-class) driver reports what it pinned or logged.
    Vendor,
    /// Nobody on the device's side: the IOMMU must track dirty pages.
    NeedsIommu,
}

/// What one driver can do for migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DriverFacts {
    /// The driver's name, with underscores.
    pub name: &'static str,
    /// Whether it implements VFIO migration (`VFIO_MIGRATION_STOP_COPY`).
    pub migrates: bool,
    /// `VFIO_MIGRATION_PRE_COPY`: state moves while the VM runs.
    pub precopy: Support,
    /// `VFIO_MIGRATION_P2P`: needed when a VM has more than one VFIO device.
    pub p2p: Support,
    /// Who reports the device's DMA writes.
    pub dirty_log: DirtyLog,
    /// A vGPU-class driver: version and board must match on both hosts.
    pub vgpu: bool,
    /// Where these facts come from, and what an operator should know.
    pub source: &'static str,
}

impl DriverFacts {
    /// The facts as data that travels (JSON from another host).
    pub fn migration(&self) -> Migration {
        Migration {
            driver: self.name.to_string(),
            migrates: self.migrates,
            precopy: self.precopy,
            p2p: self.p2p,
            dirty_log: self.dirty_log,
            vgpu: self.vgpu,
        }
    }

    /// One line: "pre-copy yes, P2P yes, device dirty logging yes".
    pub fn features(&self) -> String {
        if !self.migrates {
            return "no migration support".to_string();
        }
        let logging = match self.dirty_log {
            DirtyLog::Device => "device dirty logging yes",
            DirtyLog::Vendor => "dirty pages reported by the vendor driver",
            DirtyLog::NeedsIommu => "device dirty logging no (needs IOMMU dirty tracking)",
        };
        format!(
            "pre-copy {}, P2P {}, {logging}",
            self.precopy.word(),
            self.p2p.word()
        )
    }
}

/// What the table says about a device's driver, owned, so that a `DeviceHost` read on
/// another host (`check --side`, JSON) can be compared here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The driver's name in the table (underscores).
    pub driver: String,
    /// Whether it implements VFIO migration.
    pub migrates: bool,
    /// Pre-copy support.
    pub precopy: Support,
    /// P2P support.
    pub p2p: Support,
    /// Who reports the device's DMA writes.
    pub dirty_log: DirtyLog,
    /// A vGPU-class driver.
    pub vgpu: bool,
}

/// Drivers that cannot migrate; binding a device to one of them makes its VM
/// unmigratable.
const PLAIN: DriverFacts = DriverFacts {
    name: "vfio_pci",
    migrates: false,
    precopy: Support::No,
    p2p: Support::No,
    dirty_log: DirtyLog::NeedsIommu,
    vgpu: false,
    // drivers/vfio/pci/vfio_pci.c registers no `mig_ops`: the generic driver knows no
    // device's internal state.
    source: "drivers/vfio/pci/vfio_pci.c: the generic driver has no migration support",
};

/// The table. Flags as each driver sets `migration_flags` and `log_ops` in mainline
/// (Linux 6.x up to 6.19).
pub const DRIVERS: &[DriverFacts] = &[
    PLAIN,
    DriverFacts {
        name: "mlx5_vfio_pci",
        migrates: true,
        precopy: Support::Firmware,
        p2p: Support::Yes,
        dirty_log: DirtyLog::Device,
        vgpu: false,
        // drivers/vfio/pci/mlx5/main.c: STOP_COPY | P2P, PRE_COPY when the firmware has
        // `migration_multi_load`/`migration_tracking_state`; `log_ops` (device DMA
        // logging through the page tracker).
        source: "drivers/vfio/pci/mlx5/main.c (ConnectX VFs)",
    },
    DriverFacts {
        name: "hisi_acc_vfio_pci",
        migrates: true,
        precopy: Support::Yes,
        p2p: Support::No,
        dirty_log: DirtyLog::NeedsIommu,
        vgpu: false,
        // drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c: STOP_COPY | PRE_COPY, no
        // `log_ops`.
        source: "drivers/vfio/pci/hisilicon/hisi_acc_vfio_pci.c (HiSilicon accelerator VFs)",
    },
    DriverFacts {
        name: "pds_vfio_pci",
        migrates: true,
        precopy: Support::No,
        p2p: Support::Yes,
        dirty_log: DirtyLog::Device,
        vgpu: false,
        // drivers/vfio/pci/pds/: STOP_COPY | P2P, `log_ops` in dirty.c.
        source: "drivers/vfio/pci/pds/ (AMD Pensando DSC VFs)",
    },
    DriverFacts {
        name: "virtio_vfio_pci",
        migrates: true,
        precopy: Support::Yes,
        p2p: Support::Yes,
        dirty_log: DirtyLog::NeedsIommu,
        vgpu: false,
        // drivers/vfio/pci/virtio/migrate.c: STOP_COPY | P2P | PRE_COPY, no `log_ops`:
        // it relies on the IOMMU's dirty tracking through iommufd.
        source: "drivers/vfio/pci/virtio/ (virtio-net/blk VFs; needs IOMMU dirty tracking through iommufd)",
    },
    DriverFacts {
        name: "qat_vfio_pci",
        migrates: true,
        precopy: Support::Yes,
        p2p: Support::Yes,
        dirty_log: DirtyLog::NeedsIommu,
        vgpu: false,
        // drivers/vfio/pci/qat/main.c: STOP_COPY | P2P | PRE_COPY, no `log_ops`.
        source: "drivers/vfio/pci/qat/main.c (Intel QAT VFs)",
    },
    DriverFacts {
        name: "xe_vfio_pci",
        migrates: true,
        precopy: Support::No,
        p2p: Support::Yes,
        dirty_log: DirtyLog::NeedsIommu,
        vgpu: false,
        // drivers/vfio/pci/xe/main.c: registers as "xe-vfio-pci"; STOP_COPY | P2P.
        source: "drivers/vfio/pci/xe/ (Intel Xe graphics VFs)",
    },
    DriverFacts {
        name: "nvgrace_gpu_vfio_pci",
        migrates: false,
        precopy: Support::No,
        p2p: Support::No,
        dirty_log: DirtyLog::NeedsIommu,
        vgpu: false,
        // drivers/vfio/pci/nvgrace-gpu/main.c: exposes the Grace Hopper GPU's coherent
        // memory; no `mig_ops`.
        source: "drivers/vfio/pci/nvgrace-gpu/main.c: no migration support",
    },
    DriverFacts {
        name: "nvidia_vgpu_vfio",
        migrates: true,
        precopy: Support::Vendor,
        p2p: Support::Vendor,
        dirty_log: DirtyLog::Vendor,
        vgpu: true,
        // NVIDIA vGPU's mdev driver (outside mainline). NVIDIA documents that a vGPU
        // migrates only between hosts with the same vGPU manager version and the same
        // board; RHEL's guide adds that a vIOMMU is not supported with it.
        source: "NVIDIA vGPU manager (mdev, outside mainline)",
    },
    DriverFacts {
        name: "nvidia",
        migrates: true,
        precopy: Support::Vendor,
        p2p: Support::Vendor,
        dirty_log: DirtyLog::Vendor,
        vgpu: true,
        // NVIDIA vGPU 17 and later on SR-IOV GPUs: the VF stays with the `nvidia`
        // driver and gets its vGPU type through `nvidia/current_vgpu_type`
        // (the vendor-specific VFIO framework). Only such VFs are looked up here.
        source: "NVIDIA vGPU manager (SR-IOV VF with a vGPU type, outside mainline)",
    },
];

/// The sysfs name with `-` as `_`.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// What the table knows about `driver` (as sysfs names it).
pub fn lookup(driver: &str) -> Option<&'static DriverFacts> {
    let name = normalise(driver);
    DRIVERS.iter().find(|facts| facts.name == name)
}

/// Whether `driver` is a VFIO driver at all: in the table (other than the plain host
/// `nvidia` driver, which counts only for a VF with a vGPU type), or named like one.
pub fn is_vfio(driver: &str) -> bool {
    let name = normalise(driver);
    name != "nvidia" && (lookup(&name).is_some() || name.ends_with("vfio_pci") || name.contains("vfio"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_and_underscores_name_the_same_driver() {
        assert_eq!(lookup("vfio-pci").map(|f| f.name), Some("vfio_pci"));
        assert_eq!(lookup("xe-vfio-pci").map(|f| f.name), Some("xe_vfio_pci"));
        assert_eq!(lookup("mlx5_vfio_pci").map(|f| f.name), Some("mlx5_vfio_pci"));
        assert_eq!(lookup("mlx5_core"), None);
    }

    #[test]
    fn only_variant_and_vendor_drivers_migrate() {
        let migrating: Vec<&str> = DRIVERS.iter().filter(|f| f.migrates).map(|f| f.name).collect();
        assert!(!migrating.contains(&"vfio_pci"));
        assert!(!migrating.contains(&"nvgrace_gpu_vfio_pci"));
        for name in [
            "mlx5_vfio_pci",
            "hisi_acc_vfio_pci",
            "pds_vfio_pci",
            "virtio_vfio_pci",
            "qat_vfio_pci",
        ] {
            assert!(migrating.contains(&name), "{name}");
        }
    }

    #[test]
    fn host_drivers_are_not_vfio_drivers() {
        assert!(is_vfio("vfio-pci"));
        assert!(is_vfio("some_new_vfio_pci"));
        assert!(!is_vfio("mlx5_core"));
        assert!(!is_vfio("nvidia"));
    }
}
