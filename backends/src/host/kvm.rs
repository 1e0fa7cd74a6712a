//! KVM and its dirty ring.
//!
//! The dirty ring (`-accel kvm,dirty-ring-size=N`) is what QEMU's `dirty-limit`
//! throttle and `calc-dirty-rate` in `dirty-ring` mode need. Whether KVM offers it is
//! not in sysfs; only `KVM_CHECK_EXTENSION` on `/dev/kvm` says, so that one ioctl lives
//! in [`check_extension`] and runs only when the probes read the real `/`.

use std::fs::File;
use std::io;
use std::path::Path;

/// `KVM_CHECK_EXTENSION`: `_IO(KVMIO, 0x03)` with `KVMIO` = 0xAE
/// (include/uapi/linux/kvm.h).
const KVM_CHECK_EXTENSION: u64 = 0xAE03;
/// `KVM_CAP_DIRTY_LOG_RING` (include/uapi/linux/kvm.h, since Linux 5.11): x86's ring
/// with its total-store-order semantics. The answer is the largest ring in bytes.
pub(crate) const KVM_CAP_DIRTY_LOG_RING: u64 = 192;
/// `KVM_CAP_DIRTY_LOG_RING_ACQ_REL` (include/uapi/linux/kvm.h, 223, since Linux 6.1):
/// the ring for weakly ordered CPUs (arm64); QEMU accepts either.
pub(crate) const KVM_CAP_DIRTY_LOG_RING_ACQ_REL: u64 = 223;

/// What KVM says about its dirty ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirtyRing {
    /// Offered; the largest ring in bytes.
    Offered {
        max_bytes: u64,
        capability: &'static str,
    },
    /// KVM answered 0 for both capabilities.
    NotOffered,
    /// The probes read a fixture tree, not this machine: nothing to ask.
    NotProbed,
    /// `/dev/kvm` could not be opened or asked.
    Failed(String),
}

/// Asks the KVM at `dev_kvm` whether it offers a dirty ring.
pub(crate) fn dirty_ring(dev_kvm: &Path) -> DirtyRing {
    let kvm = match File::open(dev_kvm) {
        Ok(file) => file,
        Err(error) => return DirtyRing::Failed(format!("cannot open {}: {error}", dev_kvm.display())),
    };
    for (capability, name) in [
        (KVM_CAP_DIRTY_LOG_RING, "KVM_CAP_DIRTY_LOG_RING"),
        (KVM_CAP_DIRTY_LOG_RING_ACQ_REL, "KVM_CAP_DIRTY_LOG_RING_ACQ_REL"),
    ] {
        match check_extension(&kvm, capability) {
            Ok(0) => continue,
            Ok(max_bytes) => {
                return DirtyRing::Offered {
                    max_bytes,
                    capability: name,
                }
            }
            Err(error) => return DirtyRing::Failed(format!("KVM_CHECK_EXTENSION({name}): {error}")),
        }
    }
    DirtyRing::NotOffered
}

/// `ioctl(kvm, KVM_CHECK_EXTENSION, capability)`: 0 when the capability is absent, else
/// a positive, capability-specific answer.
#[allow(unsafe_code)]
fn check_extension(kvm: &File, capability: u64) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: KVM_CHECK_EXTENSION takes its argument by value (no pointer is passed),
    // and `kvm` is an open descriptor that outlives the call.
    let answer = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CHECK_EXTENSION as _, capability) };
    if answer < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(answer).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kvm_that_cannot_be_opened_is_a_failed_probe_with_the_reason() {
        let ring = dirty_ring(Path::new("/nonexistent/dev/kvm"));
        assert!(
            matches!(&ring, DirtyRing::Failed(why) if why.contains("/nonexistent/dev/kvm")),
            "{ring:?}"
        );
    }

    #[test]
    fn a_file_that_is_no_kvm_refuses_the_ioctl_instead_of_answering() {
        let file = tempfile::tempfile().expect("a temporary file");
        assert!(check_extension(&file, KVM_CAP_DIRTY_LOG_RING).is_err());
    }
}
