//! The host's IOMMUs, and whether they can track the pages devices write.
//!
//! A device that cannot log its own DMA migrates only if the IOMMU tracks dirty pages
//! for it (through iommufd: `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`, Linux 6.7). Otherwise
//! QEMU must count every mapped page dirty on every pass. iommufd answers the question
//! exactly (`IOMMU_GET_HW_INFO` → `IOMMU_HW_CAP_DIRTY_TRACKING`), but only for a device
//! opened through it, which a check must not do to a device a VM may be using. The
//! drivers' sysfs files give the same answer for Intel and AMD, from the same bits the
//! kernel tests:
//!
//! - Intel VT-d, `/sys/class/iommu/dmar*/intel-iommu/ecap` (`"%llx"`,
//!   drivers/iommu/intel/iommu.c `ecap_show`). The kernel offers dirty tracking when
//!   `ssads_supported()` (drivers/iommu/intel/iommu.h): scalable mode (`ecap_smts`, bit
//!   43) and second-stage accessed/dirty bits (`ecap_slads`, bit 45, SSADS in the VT-d
//!   specification), and in current kernels also scalable-mode page-walk coherency
//!   (`ecap_smpwc`, bit 48). Scalable mode must also be on at boot; `intel_iommu=sm_off`
//!   on the kernel command line turns it off.
//! - AMD-Vi, `/sys/class/iommu/ivhd*/amd-iommu/features` (drivers/iommu/amd/init.c
//!   `amd_iommu_show_features`): the extended feature register, printed `efr:efr2` since
//!   Linux 6.3 and `efr` before. `FEATURE_HDSUP` is bit 52
//!   (drivers/iommu/amd/amd_iommu_types.h), tested by `amd_iommu_hd_support()`. Linux
//!   5.19 to 6.2 printed `efr2:efr`; those kernels predate IOMMU dirty tracking (6.7), so
//!   reading the first field as the EFR is right wherever the answer matters.
//! - ARM SMMUv3 (`smmu3.*`) and every other IOMMU: no sysfs file says; the answer is
//!   "unknown".

use super::tree::Tree;

/// Which kind of IOMMU a unit is, from its name in `/sys/class/iommu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Intel VT-d (`dmar0`, ...).
    Intel,
    /// AMD-Vi (`ivhd0`, ...).
    Amd,
    /// ARM SMMUv3 (`smmu3.0x...`).
    SmmuV3,
    /// Anything else (virtio-iommu, Apple DART, ...).
    Other,
}

impl Kind {
    fn of(name: &str) -> Kind {
        if name.starts_with("dmar") {
            Kind::Intel
        } else if name.starts_with("ivhd") {
            Kind::Amd
        } else if name.starts_with("smmu3") {
            Kind::SmmuV3
        } else {
            Kind::Other
        }
    }

    /// How operators call it.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Kind::Intel => "Intel VT-d",
            Kind::Amd => "AMD-Vi",
            Kind::SmmuV3 => "ARM SMMUv3",
            Kind::Other => "IOMMU",
        }
    }
}

/// Whether a unit can track dirty pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracks {
    Yes,
    No,
    Unknown,
}

/// One IOMMU unit and what its registers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// Its name in `/sys/class/iommu`.
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) tracks: Tracks,
    /// The register value and bits read, or why nothing could be read.
    pub(crate) detail: String,
}

/// Every IOMMU unit the kernel registered, sorted by name.
pub(crate) fn units(tree: &Tree) -> Vec<Unit> {
    let scalable_off = tree.read("/proc/cmdline").is_some_and(|line| {
        line.split_whitespace()
            .any(|arg| arg.starts_with("intel_iommu=") && arg.contains("sm_off"))
    });
    tree.entries("/sys/class/iommu")
        .into_iter()
        .map(|name| {
            let kind = Kind::of(&name);
            let (tracks, detail) = match kind {
                Kind::Intel => match tree.read(&format!("/sys/class/iommu/{name}/intel-iommu/ecap")) {
                    Some(ecap) => intel(&ecap, scalable_off),
                    None => (
                        Tracks::Unknown,
                        "intel-iommu/ecap is missing or unreadable".to_string(),
                    ),
                },
                Kind::Amd => match tree.read(&format!("/sys/class/iommu/{name}/amd-iommu/features")) {
                    Some(features) => amd(&features),
                    None => (
                        Tracks::Unknown,
                        "amd-iommu/features is missing or unreadable".to_string(),
                    ),
                },
                Kind::SmmuV3 | Kind::Other => (
                    Tracks::Unknown,
                    "the kernel has no sysfs file that says (only iommufd's IOMMU_GET_HW_INFO does)"
                        .to_string(),
                ),
            };
            Unit {
                name,
                kind,
                tracks,
                detail,
            }
        })
        .collect()
}

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

fn bit(value: u64, n: u32) -> bool {
    value >> n & 1 == 1
}

/// Decodes a VT-d `ecap` as the kernel's `ssads_supported()` does.
pub(crate) fn intel(ecap: &str, scalable_off: bool) -> (Tracks, String) {
    let Some(value) = hex(ecap) else {
        return (Tracks::Unknown, format!("ecap {ecap:?} is not hexadecimal"));
    };
    let (smts, ssads, smpwc) = (bit(value, 43), bit(value, 45), bit(value, 48));
    let yes_no = |b: bool| if b { "set" } else { "clear" };
    let bits = format!(
        "ecap 0x{value:x}: SSADS (bit 45) {}, scalable mode (bit 43) {}, page-walk coherency (bit 48) {}",
        yes_no(ssads),
        yes_no(smts),
        yes_no(smpwc)
    );
    let tracks = if ssads && smts && smpwc && !scalable_off {
        Tracks::Yes
    } else {
        Tracks::No
    };
    if ssads && smts && smpwc && scalable_off {
        return (
            tracks,
            format!("{bits}; but intel_iommu=sm_off is on the kernel command line"),
        );
    }
    (tracks, bits)
}

/// Decodes AMD-Vi `features` (`efr:efr2`, or `efr` on older kernels).
pub(crate) fn amd(features: &str) -> (Tracks, String) {
    let efr_text = features.split(':').next().unwrap_or(features);
    let Some(efr) = hex(efr_text) else {
        return (
            Tracks::Unknown,
            format!("features {features:?} is not hexadecimal"),
        );
    };
    let hdsup = bit(efr, 52);
    let tracks = if hdsup { Tracks::Yes } else { Tracks::No };
    (
        tracks,
        format!(
            "EFR 0x{efr:x}: HDSup (bit 52) {}",
            if hdsup { "set" } else { "clear" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_tracks_only_with_ssads_scalable_mode_and_coherent_walks() {
        let all = (1u64 << 43) | (1 << 45) | (1 << 48) | 0xf0205e;
        assert_eq!(intel(&format!("{all:x}"), false).0, Tracks::Yes);
        assert_eq!(intel(&format!("{:x}", all & !(1 << 45)), false).0, Tracks::No);
        assert_eq!(intel(&format!("{:x}", all & !(1 << 43)), false).0, Tracks::No);
        assert_eq!(intel(&format!("{:x}", all & !(1 << 48)), false).0, Tracks::No);
        assert_eq!(intel(&format!("{all:x}"), true).0, Tracks::No);
        assert_eq!(intel("19e2ff0505e", false).0, Tracks::No);
        assert_eq!(intel("garbage", false).0, Tracks::Unknown);
    }

    #[test]
    fn amd_reads_hdsup_from_the_first_field_in_either_layout() {
        let efr = (1u64 << 52) | 0x58f77ef22294a5a & !(1 << 52);
        assert_eq!(amd(&format!("{efr:x}:0")).0, Tracks::Yes);
        assert_eq!(amd(&format!("{efr:x}")).0, Tracks::Yes);
        assert_eq!(amd("58f77ef22294a5a:0").0, Tracks::No);
        assert_eq!(amd(":").0, Tracks::Unknown);
    }
}
