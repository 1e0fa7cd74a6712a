//! One QEMU process running (or waiting for) the guest.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::accel::AccelInfo;
use crate::error::{io_error, RigError};
use crate::spawn::die_with_parent;
use crate::{parse_heartbeat, GuestParams, Heartbeat, GUEST_ELF};

/// The firmware: SeaBIOS takes ~3 s to boot under KVM-PVM, qboot ~0.2 s.
const FIRMWARE: &str = "/usr/share/qemu/qboot.rom";

/// How often the waits below look at the serial log.
const POLL: Duration = Duration::from_millis(20);

/// Everything that decides a QEMU command line. Source and destination must get the same
/// machine, CPU, accelerator and memory, or the migration stream does not load.
pub(crate) struct Launch<'a> {
    /// The QEMU binary.
    pub qemu: &'a Path,
    /// Where sockets, logs and the guest image go.
    pub dir: &'a Path,
    /// `source`, `destination` or `probe`: names the files and the errors.
    pub side: &'a str,
    /// Accelerator and CPU model.
    pub accel: &'a AccelInfo,
    /// Guest RAM in MiB.
    pub mem_mb: u32,
    /// The workload on the guest's command line.
    pub guest: GuestParams,
    /// Start paused, waiting for `migrate-incoming` (`-incoming defer -S`).
    pub incoming: bool,
    /// Arguments appended to the command line.
    pub extra: &'a [String],
}

/// A running QEMU: its monitor socket and serial log. Killed (and reaped) on drop.
#[derive(Debug)]
pub struct QemuProcess {
    /// The QMP socket (`-qmp unix:<path>,server=on,wait=off`).
    pub qmp_socket: PathBuf,
    /// A second QMP socket for tests to watch through while the tool holds the first
    /// (QEMU serves one client per monitor).
    pub observer_socket: PathBuf,
    /// The guest's serial output (`-serial file:<path>`).
    pub serial_log: PathBuf,
    stderr_log: PathBuf,
    side: String,
    command: String,
    pid: u32,
    /// Behind a mutex so that `&self` waits can notice that QEMU has exited.
    child: Mutex<Option<Child>>,
}

impl QemuProcess {
    /// Starts QEMU and waits until its QMP socket exists.
    pub(crate) fn start(launch: &Launch<'_>) -> Result<QemuProcess, RigError> {
        let dir = launch.dir;
        let side = launch.side;
        let kernel = dir.join("guest.elf");
        if !kernel.exists() {
            std::fs::write(&kernel, GUEST_ELF).map_err(io_error(format!("write {}", kernel.display())))?;
        }
        let qmp_socket = dir.join(format!("{side}.qmp"));
        let observer_socket = dir.join(format!("{side}-observer.qmp"));
        let serial_log = dir.join(format!("{side}.serial"));
        let stderr_log = dir.join(format!("{side}.stderr"));
        // A probe reuses its side name: never mistake the previous run's files for this one's.
        let _ = std::fs::remove_file(&qmp_socket);
        let _ = std::fs::remove_file(&observer_socket);
        let _ = std::fs::remove_file(&serial_log);
        // QEMU's stderr goes to a file, not a pipe: nobody drains a pipe while tests run,
        // and a full pipe would block QEMU.
        let stderr =
            File::create(&stderr_log).map_err(io_error(format!("create {}", stderr_log.display())))?;

        let mut cmd = Command::new(launch.qemu);
        cmd.args(["-machine", "pc", "-smp", "1", "-m"])
            .arg(launch.mem_mb.to_string())
            .args(launch.accel.args())
            .args(["-display", "none", "-nodefaults", "-no-user-config"])
            .args(["-bios", FIRMWARE, "-kernel"])
            .arg(&kernel)
            .arg("-append")
            .arg(launch.guest.cmdline())
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", observer_socket.display()))
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()));
        if launch.incoming {
            // Not told where to listen: the tool under test sends `migrate-incoming`.
            cmd.args(["-incoming", "defer", "-S"]);
        }
        cmd.args(launch.extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        die_with_parent(&mut cmd);
        let command = shell_words(&cmd);
        let child = cmd.spawn().map_err(|source| RigError::Spawn {
            side: side.to_string(),
            command: command.clone(),
            source,
        })?;
        let process = QemuProcess {
            qmp_socket,
            observer_socket,
            serial_log,
            stderr_log,
            side: side.to_string(),
            command,
            pid: child.id(),
            child: Mutex::new(Some(child)),
        };
        process.wait_for_socket(Duration::from_secs(10))?;
        Ok(process)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the Option intact: keep using it.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How QEMU ended, if it has (reaped or not).
    fn exit_status(&self) -> Option<String> {
        match self.child().as_mut() {
            None => Some("killed by the rig".into()),
            Some(c) => match c.try_wait() {
                Ok(Some(status)) => Some(describe(status)),
                Ok(None) => None,
                Err(e) => Some(format!("unknown state ({e})")),
            },
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// An error saying what did not happen, with QEMU's exit and stderr if it is gone.
    fn failure(&self, detail: String) -> RigError {
        let detail = match self.exit_status() {
            Some(status) => {
                let stderr = std::fs::read(&self.stderr_log).unwrap_or_default();
                let stderr = String::from_utf8_lossy(&stderr);
                let stderr = stderr.trim();
                // The last lines say why (e.g. "failed to set MSR 0x10a" and an assertion).
                let start = (stderr.len().saturating_sub(600)..stderr.len())
                    .find(|&i| stderr.is_char_boundary(i))
                    .unwrap_or(0);
                let tail = &stderr[start..];
                format!("{detail}; QEMU exited ({status}); stderr: {tail:?}")
            }
            None => detail,
        };
        RigError::NotReady {
            side: self.side.clone(),
            detail,
            log: self.serial_log.clone(),
            command: self.command.clone(),
        }
    }

    fn wait_for_socket(&self, timeout: Duration) -> Result<(), RigError> {
        let deadline = Instant::now() + timeout;
        while !self.qmp_socket.exists() {
            if !self.is_running() || Instant::now() > deadline {
                return Err(self.failure(format!("no QMP socket within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// The guest's serial output so far (invalid UTF-8 replaced, never lost).
    pub fn serial(&self) -> String {
        let bytes = std::fs::read(&self.serial_log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Every heartbeat so far, oldest first.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.serial().lines().filter_map(parse_heartbeat).collect()
    }

    /// Waits for a serial line starting with `prefix` and returns it; fails early if
    /// QEMU exits.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> Result<String, RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.serial().lines().find(|l| l.starts_with(prefix)) {
                return Ok(line.to_string());
            }
            if !self.is_running() || Instant::now() > deadline {
                return Err(self.failure(format!("no {prefix:?} line within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until more than `count` heartbeats were printed and returns the newest; so
    /// `wait_for_heartbeat_after(p.heartbeats().len(), ..)` waits for a fresh one.
    pub fn wait_for_heartbeat_after(&self, count: usize, timeout: Duration) -> Result<Heartbeat, RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            let beats = self.heartbeats();
            if beats.len() > count {
                if let Some(last) = beats.last() {
                    return Ok(*last);
                }
            }
            if !self.is_running() || Instant::now() > deadline {
                return Err(self.failure(format!("no heartbeat after the first {count} within {timeout:?}")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// QEMU's process id (still reported after it was killed).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `source`, `destination` or `probe`.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The command line QEMU was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Sends SIGKILL without waiting, so that a pair's two QEMUs exit in parallel.
    pub(crate) fn signal_kill(&self) {
        if let Some(child) = self.child().as_mut() {
            let _ = child.kill();
        }
    }

    /// Kills QEMU (SIGKILL) and waits for it to exit; a no-op once done.
    pub fn kill(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = child {
            // kill fails only if it already exited; wait reaps it either way.
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

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The command line as one could paste it into a shell (good enough for error messages).
pub(crate) fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
