//! One QEMU process and a source/destination pair on loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::accel::{self, AccelInfo};
use crate::error::RigError;
use crate::spawn::die_with_parent;
use crate::{parse_heartbeat, GuestParams, Heartbeat, PairOptions, GUEST_ELF};

/// A running QEMU: its monitor socket and serial log. Killed on drop.
#[derive(Debug)]
pub struct QemuProcess {
    /// The QMP socket (`-qmp unix:...`).
    pub qmp_socket: PathBuf,
    /// The guest's serial output.
    pub serial_log: PathBuf,
    side: String,
    child: Option<Child>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}

impl QemuProcess {
    fn start(
        qemu: &Path,
        dir: &Path,
        side: &str,
        accel: &AccelInfo,
        mem_mb: u32,
        guest: GuestParams,
        incoming: bool,
    ) -> Result<QemuProcess, RigError> {
        let kernel = dir.join("guest.elf");
        if !kernel.exists() {
            std::fs::write(&kernel, GUEST_ELF).map_err(io(format!("write {}", kernel.display())))?;
        }
        let qmp_socket = dir.join(format!("{side}.qmp"));
        let serial_log = dir.join(format!("{side}.serial"));
        let _ = std::fs::remove_file(&qmp_socket);
        let _ = std::fs::remove_file(&serial_log);
        let mut cmd = Command::new(qemu);
        cmd.args(["-machine", "pc", "-smp", "1", "-m"])
            .arg(mem_mb.to_string())
            .args(accel.args())
            .args(["-display", "none", "-nodefaults", "-no-user-config"])
            .args(["-bios", "/usr/share/qemu/qboot.rom", "-kernel"])
            .arg(&kernel)
            .arg("-append")
            .arg(guest.cmdline())
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()));
        if incoming {
            cmd.args(["-incoming", "defer", "-S"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| RigError::Spawn {
            side: side.to_string(),
            command: format!("{cmd:?}"),
            source,
        })?;
        let mut process = QemuProcess {
            qmp_socket,
            serial_log,
            side: side.to_string(),
            child: Some(child),
        };
        process.wait_for_socket(Duration::from_secs(10))?;
        Ok(process)
    }

    /// Starts a QEMU that boots the guest.
    pub(crate) fn start_source(
        qemu: &Path,
        dir: &Path,
        side: &str,
        accel: &AccelInfo,
        mem_mb: u32,
        guest: GuestParams,
    ) -> Result<QemuProcess, RigError> {
        Self::start(qemu, dir, side, accel, mem_mb, guest, false)
    }

    fn not_ready(&mut self, detail: impl Into<String>) -> RigError {
        let mut detail = detail.into();
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                detail = format!("{detail}; QEMU exited ({status}): {}", stderr.trim());
            }
        }
        RigError::NotReady {
            side: self.side.clone(),
            detail,
            log: self.serial_log.clone(),
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    fn wait_for_socket(&mut self, timeout: Duration) -> Result<(), RigError> {
        let deadline = Instant::now() + timeout;
        while !self.qmp_socket.exists() {
            if self.exited() || Instant::now() > deadline {
                return Err(self.not_ready("no QMP socket"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The guest's serial output so far.
    pub fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial_log).unwrap_or_default()
    }

    /// Every heartbeat so far.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.serial().lines().filter_map(parse_heartbeat).collect()
    }

    /// Waits for a line starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.serial().lines().find(|l| l.starts_with(prefix)) {
                return Ok(line.to_string());
            }
            if self.exited() || Instant::now() > deadline {
                return Err(self.not_ready(format!("no {prefix:?} line within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until more than `count` heartbeats were printed; returns the newest.
    pub fn wait_for_heartbeat_after(&self, count: usize, timeout: Duration) -> Result<Heartbeat, RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            let beats = self.heartbeats();
            if beats.len() > count {
                if let Some(last) = beats.last() {
                    return Ok(*last);
                }
            }
            if Instant::now() > deadline {
                return Err(RigError::NotReady {
                    side: self.side.clone(),
                    detail: format!("no heartbeat after the first {count} within {timeout:?}"),
                    log: self.serial_log.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills QEMU and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A source running the guest and a destination waiting for it (`-incoming defer -S`),
/// in a temporary directory that is removed on drop, with both QEMUs killed.
#[derive(Debug)]
pub struct QemuPair {
    /// The source QEMU, running the guest.
    pub source: QemuProcess,
    /// The destination QEMU, waiting for `migrate-incoming`.
    pub destination: QemuProcess,
    /// A free loopback port for the destination to listen on.
    pub migration_port: u16,
    /// The accelerator both run with.
    pub accel: AccelInfo,
    dir: tempfile::TempDir,
}

impl QemuPair {
    /// Starts both QEMUs; returns once the guest printed READY on the source.
    pub fn start(opts: &PairOptions) -> Result<QemuPair, RigError> {
        let dir = tempfile::Builder::new()
            .prefix("vfio-migrate-rig-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let accel = accel::choose(opts.accel, opts.dirty_ring, &opts.qemu, dir.path())?;
        let mem_mb = opts.mem_mb.max(opts.guest.wss_mb + 32);
        let mut source = QemuProcess::start(
            &opts.qemu,
            dir.path(),
            "source",
            &accel,
            mem_mb,
            opts.guest,
            false,
        )?;
        let destination = QemuProcess::start(
            &opts.qemu,
            dir.path(),
            "destination",
            &accel,
            mem_mb,
            opts.guest,
            true,
        )?;
        source.wait_for_line("READY", Duration::from_secs(20))?;
        let migration_port = free_port().map_err(io("find a free loopback port"))?;
        Ok(QemuPair {
            source,
            destination,
            migration_port,
            accel,
            dir,
        })
    }

    /// The pair's temporary directory (sockets, logs, guest image).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
