//! Reading a host's `/sys` and `/dev` under a root directory.
//!
//! Every probe goes through [`Tree`], so that tests point the probes at a fixture tree
//! and a real host is the same code with the root `/`. Nothing here writes, and nothing
//! here fails: a file that is missing or unreadable is a finding for the caller ("no
//! such file"), never an error, because on a host that is not ready for VFIO most of
//! these files are missing by design.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most a probe reads of one file. sysfs attributes are at most a page; a fixture
/// or a strange file must not make a host check read gigabytes.
const MAX_READ: u64 = 64 * 1024;

/// A host's file tree, seen from `root`.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    root: PathBuf,
}

impl Tree {
    pub(crate) fn new(root: PathBuf) -> Tree {
        Tree { root }
    }

    /// The root the probes read under.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `abs` (an absolute host path such as `/sys/class/iommu`) under the root.
    pub(crate) fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Whether something (a file, a directory, a device node, a symlink even when it
    /// dangles) is at `abs`.
    pub(crate) fn exists(&self, abs: &str) -> bool {
        fs::symlink_metadata(self.path(abs)).is_ok()
    }

    /// Whether `abs` is a directory (following symlinks, as sysfs device links are).
    pub(crate) fn is_dir(&self, abs: &str) -> bool {
        self.path(abs).is_dir()
    }

    /// A small text file, trimmed; `None` when it is missing, unreadable or empty.
    pub(crate) fn read(&self, abs: &str) -> Option<String> {
        let file = fs::File::open(self.path(abs)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_READ).read_to_end(&mut bytes).ok()?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// The last component of the symlink at `abs` (sysfs says "which driver" and "which
    /// group" this way: `driver -> ../../bus/pci/drivers/vfio-pci`).
    pub(crate) fn link_name(&self, abs: &str) -> Option<String> {
        let target = fs::read_link(self.path(abs)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// The names in the directory at `abs`, sorted; empty when there is none.
    pub(crate) fn entries(&self, abs: &str) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.path(abs)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Whether the root is this machine's own `/`, where probes that are no file reads
    /// (the KVM ioctl) mean something.
    pub(crate) fn is_real_root(&self) -> bool {
        fs::canonicalize(&self.root).is_ok_and(|path| path == Path::new("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_under_the_root_whatever_their_leading_slash() {
        let tree = Tree::new(PathBuf::from("/tmp/fixture"));
        assert_eq!(
            tree.path("/sys/class/iommu"),
            Path::new("/tmp/fixture/sys/class/iommu")
        );
        assert_eq!(tree.path("dev/kvm"), Path::new("/tmp/fixture/dev/kvm"));
    }

    #[test]
    fn a_missing_file_is_nothing_read_not_an_error() {
        let tree = Tree::new(PathBuf::from("/nonexistent-root-for-a-test"));
        assert_eq!(tree.read("/sys/module/vfio/version"), None);
        assert!(!tree.exists("/dev/kvm"));
        assert!(tree.entries("/sys/class/iommu").is_empty());
        assert!(!tree.is_real_root());
    }
}
