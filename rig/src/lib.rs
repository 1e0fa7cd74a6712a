//! # vfio-migrate rig
//!
//! What the tests, benchmarks and the demo run on: real QEMUs on loopback with a guest
//! whose dirty rate and working set are chosen at boot.
//!
//! The guest (`guest/guest.S`, built by `build.rs`) is a bare-metal multiboot program:
//! this project's machines run KVM under KVM-PVM, where a Linux kernel does not finish
//! booting but long-mode ring-3 code runs at native speed. It fills its working set,
//! then every timer tick writes `rate_mb / HZ` MiB of pages round-robin, checking before
//! each write that the page still holds the value written last time (a migration that
//! loses a page shows up as `errors`), and prints one heartbeat line a second:
//!
//! ```text
//! READY wss_mb=256 rate_mb=100
//! HB t=1 rate_mb=100 errors=0 pages=25600
//! ```
//!
//! [`QemuPair::start`] boots it on a source QEMU and starts a paused destination
//! (`-incoming defer -S`) with the same machine, CPU and accelerator; the QMP sockets,
//! serial logs and a free migration port are what a migration tool needs. To try a
//! migration by hand: `cargo run -p vfio-migrate-rig --example pair -- 256 50`.
//!
//! [`LibvirtPair::start`] runs the same guest as a libvirt domain instead: two private
//! libvirt daemons side by side (each in its own mount and PID namespace), the domain
//! running on the source, for tests of migrations that libvirt drives.

mod accel;
mod error;
mod libvirt;
mod pair;
mod process;
mod spawn;

pub use accel::{Accel, AccelInfo};
pub use error::RigError;
pub use libvirt::{LibvirtDaemon, LibvirtPair, LibvirtPairOptions};
pub use pair::QemuPair;
pub use process::QemuProcess;

use std::path::PathBuf;

/// The guest image, an ELF32 multiboot kernel for QEMU's `-kernel`, built from
/// `guest/guest.S` by `build.rs`.
pub const GUEST_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.elf"));

/// The largest working set the guest supports: its per-page counters live in a 4 MiB
/// array (8 bytes for each 4 KiB page). The guest also clamps it to the RAM it has.
pub const MAX_WSS_MB: u32 = 2048;

/// The guest's workload, passed on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestParams {
    /// Working set in MiB (at most [`MAX_WSS_MB`]), filled at boot and dirtied round-robin.
    pub wss_mb: u32,
    /// MiB written per second; 0 leaves the guest idle.
    pub rate_mb: u32,
}

impl GuestParams {
    /// The `-append` string.
    pub fn cmdline(&self) -> String {
        format!("wss_mb={} rate_mb={}", self.wss_mb, self.rate_mb)
    }
}

/// How to start a pair. The default: 1 GiB of RAM, an idle 64 MiB working set,
/// [`Accel::Auto`], the dirty ring on (where KVM is used), `qemu-system-x86_64` from `PATH`.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// Guest RAM in MiB (default 1024); raised to the working set plus 32 MiB if smaller.
    pub mem_mb: u32,
    /// The workload.
    pub guest: GuestParams,
    /// Accelerator choice.
    pub accel: Accel,
    /// Turn on the KVM dirty ring (needed for dirty-ring measurements and dirty limits);
    /// ignored under TCG. [`QemuPair::accel`] says whether it is on.
    pub dirty_ring: bool,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// More arguments for the source QEMU only (a test that needs the two sides to
    /// differ: a migration blocker, say).
    pub source_args: Vec<String>,
    /// The destination's RAM in MiB when it must differ from the source's.
    pub destination_mem_mb: Option<u32>,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            mem_mb: 1024,
            guest: GuestParams {
                wss_mb: 64,
                rate_mb: 0,
            },
            accel: Accel::Auto,
            dirty_ring: true,
            qemu: PathBuf::from("qemu-system-x86_64"),
            source_args: Vec::new(),
            destination_mem_mb: None,
        }
    }
}

/// One heartbeat line of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Seconds since the workload started (guest time).
    pub t: u64,
    /// MiB written in the last second.
    pub rate_mb: u64,
    /// Pages found not holding what was written to them.
    pub errors: u64,
    /// Page writes so far.
    pub pages: u64,
}

/// Parses `HB t=1 rate_mb=100 errors=0 pages=25600`.
pub fn parse_heartbeat(line: &str) -> Option<Heartbeat> {
    let rest = line.trim().strip_prefix("HB ")?;
    let mut hb = Heartbeat {
        t: 0,
        rate_mb: 0,
        errors: 0,
        pages: 0,
    };
    let mut seen = 0;
    for field in rest.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match key {
            "t" => hb.t = value,
            "rate_mb" => hb.rate_mb = value,
            "errors" => hb.errors = value,
            "pages" => hb.pages = value,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 4).then_some(hb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_heartbeat("HB t=3 rate_mb=100 errors=0 pages=76800"),
            Some(Heartbeat {
                t: 3,
                rate_mb: 100,
                errors: 0,
                pages: 76800
            })
        );
        assert_eq!(parse_heartbeat("HB t=3 rate_mb=x errors=0 pages=1"), None);
        assert_eq!(parse_heartbeat("READY wss_mb=1 rate_mb=2"), None);
        assert_eq!(parse_heartbeat("HB t=3"), None);
    }

    #[test]
    fn the_guest_image_is_an_elf32_multiboot_kernel() {
        assert_eq!(&GUEST_ELF[..4], b"\x7fELF");
        assert_eq!(GUEST_ELF[4], 1, "ELF32, as QEMU's multiboot loader requires");
        let magic = 0x1BADB002u32.to_le_bytes();
        let header = GUEST_ELF[..GUEST_ELF.len().min(8192)]
            .windows(4)
            .position(|w| w == magic);
        assert!(header.is_some(), "multiboot header within the first 8 KiB");
    }
}
