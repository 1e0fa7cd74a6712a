//! Starting QEMU so that it dies with the process that started it: a test that panics
//! past its drops, or is killed, must not leave QEMUs behind holding gigabytes of RAM.
//!
//! Linux delivers the parent-death signal when the *thread* that forked the child
//! exits, not only the process: a pair must be used (and dropped) on the thread that
//! started it, which is what tests, the bench and the demo do.

#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Asks the kernel to SIGKILL the child when its parent (thread) exits.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl and
    // getppid, which are async-signal-safe; it allocates nothing and touches no memory
    // shared with the parent (`parent` is a plain integer copied into the closure).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal would come.
            // (An OS error code, not a message: allocating after fork is not safe.)
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
