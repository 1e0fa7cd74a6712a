//! Helpers shared by the tests that start real QEMUs.

use std::process::{Command, Stdio};

/// The QEMU the tests start.
pub const QEMU: &str = "qemu-system-x86_64";

/// Whether QEMU is installed. Outside CI a missing QEMU skips the test with a note; in
/// CI (`CI` set, as `.ci/run` runs) it fails, so a broken install cannot pass as green.
pub fn qemu_installed() -> bool {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{QEMU} is not installed, and CI must run the QEMU tests"
    );
    if !found {
        eprintln!("{QEMU} not installed: skipping");
    }
    found
}
