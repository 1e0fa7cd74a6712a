//! Host probes: is this host ready to send or receive VFIO migrations, and is a plan's
//! device ready on it? Read only from `/sys` and `/dev` under a root directory (`/` on
//! a real host, a fixture tree in tests), plus two exceptions that are no files: one
//! `KVM_CHECK_EXTENSION` ioctl on `/dev/kvm` (only when the root is this machine's
//! `/`) and `--version` of the installed QEMU and libvirt.
//!
//! Nothing here changes the host, and nothing fails: a missing file is a finding. The
//! results are [`engine::check::Row`]s, the rows of `vfio-migrate check`; every row id
//! is listed in docs/check.md.
//!
//! | module | one job |
//! |---|---|
//! | `tree` | reading files, links and directories under the root |
//! | `kvm` | `/dev/kvm` and the dirty-ring ioctl |
//! | `iommu` | IOMMU units and their dirty-tracking bits |
//! | [`drivers`] | the knowledge table: which VFIO driver migrates, with which features |
//! | `pci` | one device as sysfs shows it (PCI function or mdev), vGPU identity |
//! | `tools` | QEMU's and libvirt's versions and what they bring |
//! | `checks` | [`host_rows`] |
//! | `device` | [`device_rows`], [`DeviceHost`] |
//! | `compare` | [`compare_across_hosts`] |
//!
//! The probes block (file reads, and up to a few seconds for `--version`); async
//! callers run them with `tokio::task::spawn_blocking`.

mod checks;
mod compare;
mod device;
pub mod drivers;
mod iommu;
mod kvm;
mod pci;
mod plan;
mod tools;
mod tree;

use std::path::{Path, PathBuf};

pub use checks::host_rows;
pub use compare::compare_across_hosts;
pub use device::{device_rows, DeviceHost, DirtyTracking};
pub use pci::Vgpu;
pub use plan::{across_hosts, plan_rows};
pub use tools::ProbeError;

/// A host, seen through its file tree from `root`.
#[derive(Debug, Clone)]
pub struct Host {
    tree: tree::Tree,
}

impl Host {
    /// The host whose `/sys` and `/dev` are under `root`: `/` for this machine, a
    /// fixture tree in tests (`backends/tests/fixtures/hosts/`).
    pub fn new(root: PathBuf) -> Host {
        Host {
            tree: tree::Tree::new(root),
        }
    }

    /// The root the probes read under.
    pub fn root(&self) -> &Path {
        self.tree.root()
    }
}
