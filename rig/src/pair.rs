//! A source QEMU running the guest and a destination waiting for it, on loopback.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::accel::{self, AccelInfo};
use crate::error::{io_error, RigError};
use crate::process::{Launch, QemuProcess};
use crate::{PairOptions, MAX_WSS_MB};

/// RAM the guest needs besides its working set: image, page tables, the per-page
/// counters (4..8 MiB) and the gap below the working set, which starts at 16 MiB.
pub(crate) const GUEST_OVERHEAD_MB: u32 = 32;

/// A source running the guest and a destination waiting for it (`-incoming defer -S`),
/// in a temporary directory. Dropping it kills both QEMUs, waits for them, and removes
/// the directory.
#[derive(Debug)]
pub struct QemuPair {
    /// The source QEMU, running the guest.
    pub source: QemuProcess,
    /// The destination QEMU, paused, not yet listening: send it `migrate-incoming`.
    pub destination: QemuProcess,
    /// A loopback port that was free when the pair started, for the destination to
    /// listen on (`tcp:127.0.0.1:<port>`).
    pub migration_port: u16,
    /// The accelerator and CPU model both sides run with.
    pub accel: AccelInfo,
    dir: tempfile::TempDir,
}

impl QemuPair {
    /// Starts both QEMUs with identical machine, CPU, accelerator and memory, and returns
    /// once the guest printed READY on the source and both QMP sockets exist.
    ///
    /// The guest RAM is raised to the working set plus 32 MiB if `mem_mb` is smaller.
    /// The QEMUs are killed if the thread that started the pair exits (parent-death
    /// signal), so use and drop the pair on that thread.
    /// With [`crate::Accel::Auto`] the first pair of the process probes which
    /// accelerator and CPU model boot the guest (see [`AccelInfo`]).
    pub fn start(opts: &PairOptions) -> Result<QemuPair, RigError> {
        if opts.guest.wss_mb > MAX_WSS_MB {
            return Err(RigError::Options(format!(
                "wss_mb={} is more than the guest supports ({MAX_WSS_MB})",
                opts.guest.wss_mb
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("vfio-migrate-rig-")
            .tempdir()
            .map_err(io_error("create a temporary directory"))?;
        let accel = accel::choose(opts.accel, opts.dirty_ring, &opts.qemu, dir.path())?;
        let mem_mb = opts.mem_mb.max(opts.guest.wss_mb + GUEST_OVERHEAD_MB);
        let launch = |side, incoming, mem_mb, extra| Launch {
            qemu: &opts.qemu,
            dir: dir.path(),
            side,
            accel: &accel,
            mem_mb,
            guest: opts.guest,
            incoming,
            extra,
        };
        // Both start before waiting for READY, so their start-up overlaps. An early
        // return drops what was started, which kills it.
        let source = QemuProcess::start(&launch("source", false, mem_mb, &opts.source_args))?;
        let destination_mem = opts.destination_mem_mb.unwrap_or(mem_mb);
        let destination = QemuProcess::start(&launch("destination", true, destination_mem, &[]))?;
        // Filling the largest (2 GiB) working set takes ~2 s under KVM-PVM: 20 s is ample.
        source.wait_for_line("READY", Duration::from_secs(20))?;
        let migration_port = free_port().map_err(io_error("find a free loopback port"))?;
        Ok(QemuPair {
            source,
            destination,
            migration_port,
            accel,
            dir,
        })
    }

    /// The pair's temporary directory (QMP sockets, serial logs, QEMU stderr, guest image).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for QemuPair {
    fn drop(&mut self) {
        // Signal both before reaping either: a QEMU can take ~2 s to exit on these hosts,
        // and the two exits then overlap. The fields (and the temp dir) drop afterwards.
        self.source.signal_kill();
        self.destination.signal_kill();
        self.source.kill();
        self.destination.kill();
    }
}

/// A port the kernel just handed out on loopback. Another process could take it before
/// the destination listens; on a test machine that is rare enough.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
