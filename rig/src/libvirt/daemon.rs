//! One private `libvirtd`, side by side with others on the same machine.
//!
//! A root `libvirtd` uses fixed paths (`/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt`,
//! `/var/cache/libvirt`, `/var/log/libvirt`), so two cannot share a mount namespace. Each
//! daemon here runs in its own mount *and* PID namespace (`unshare`), with a private
//! temporary tree bind-mounted over those five directories:
//!
//! - the mount namespace gives it its own configuration, sockets, state and logs; a path
//!   such as `/var/log/libvirt/qemu/x.serial` names a different file for each daemon, and
//!   is `<tree>/log/qemu/x.serial` from outside;
//! - the PID namespace makes its QEMUs die with it: QEMUs that libvirtd starts outlive
//!   libvirtd, but not the namespace's init. `unshare --kill-child` kills that init when
//!   `unshare` dies, and `unshare` gets the rig's parent-death signal, so even a test
//!   killed with SIGKILL leaves no daemon or QEMU behind.
//!
//! The init is a bash that starts libvirtd and waits: as PID 1 it reaps the QEMUs that
//! libvirtd daemonizes (re-parented to it), which libvirt otherwise waits for in vain
//! while stopping a domain.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{io_error, RigError};
use crate::process::{describe, shell_words};
use crate::spawn::die_with_parent;
use crate::{parse_heartbeat, Heartbeat};

/// The directories a root libvirtd uses, each with the tree subdirectory mounted over it.
const MOUNTS: [(&str, &str); 5] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
];

/// The namespace's init: mounts the tree, then runs libvirtd as its child and waits, so
/// that it reaps whatever is re-parented to it. `$1` is the tree, `$2` the CPU libvirtd
/// is pinned to.
///
/// Why pinned: libvirt's QEMU capability cache records the host's CPUID, and a cached
/// file whose CPUID differs from what the daemon reads is probed again. On these hosts
/// leaf 0x1f reports the x2APIC id of the CPU that runs the instruction, so a daemon on
/// another CPU than the one that wrote the cache throws it away (~1 s). libvirt sets
/// each QEMU's affinity to all host CPUs itself, so the guest is not pinned with it.
const INIT: &str = r#"set -eu
T=$1
CPU=$2
# The mount point must exist; outside the namespace it stays an empty directory.
mkdir -p /run/libvirt
mount --bind "$T/etc" /etc/libvirt
mount --bind "$T/run" /run/libvirt
mount --bind "$T/lib" /var/lib/libvirt
mount --bind "$T/cache" /var/cache/libvirt
mount --bind "$T/log" /var/log/libvirt
taskset -c "$CPU" libvirtd --pid-file /run/libvirt/libvirtd.pid &
wait $!
"#;

/// Where the migration port ranges are drawn from: below Linux's ephemeral range
/// (32768 and up), so outgoing connections do not take them.
const PORT_BLOCKS: RangeInclusive<u16> = 10_000..=32_000;

/// Ports per daemon for incoming migrations (one per concurrent incoming migration).
const PORTS_PER_DAEMON: u16 = 16;

/// Probing QEMU's capabilities the first time takes ~8 s; with the cache ~0.1 s.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(25);

/// A private libvirtd in its own namespaces and temporary tree, reached over the UNIX
/// socket in that tree. Dropping it kills the daemon and every QEMU it started, waits
/// for them, saves its QEMU capability cache for the next daemon, and removes the tree.
#[derive(Debug)]
pub struct LibvirtDaemon {
    side: String,
    uri: String,
    host_uuid: String,
    migration_ports: RangeInclusive<u16>,
    /// `unshare`; the namespace's init is its only child.
    child: Option<Child>,
    /// `/proc/<unshare>/ns/pid_for_children`, which names the namespace.
    pid_namespace: String,
    started_in: Duration,
    tree: tempfile::TempDir,
}

impl LibvirtDaemon {
    /// Starts a daemon and returns once it answers `virsh uri`. `side` (`source`,
    /// `destination`) names it in errors.
    ///
    /// The daemon dies if the thread that started it exits (parent-death signal), so use
    /// and drop it on that thread.
    pub fn start(side: &str) -> Result<LibvirtDaemon, RigError> {
        let daemon = LibvirtDaemon::spawn(side, None)?;
        daemon.wait_until_ready()
    }

    /// Starts the daemon without waiting for it, so that two can start in parallel;
    /// `tls_dir` is its `migrate_tls_x509_cert_dir`, when migrations are to be encrypted.
    pub(crate) fn spawn(side: &str, tls_dir: Option<&Path>) -> Result<Starting, RigError> {
        check_available()?;
        let t = Instant::now();
        let tree = tempfile::Builder::new()
            .prefix("vfio-migrate-rig-libvirt-")
            .tempdir()
            .map_err(io_error("create a temporary directory for libvirtd"))?;
        for (dir, _) in MOUNTS {
            mkdir(&tree.path().join(dir))?;
        }
        // libvirtd creates the rest of its tree itself, but not the directory its
        // domains' logs (and the rig's serial logs) go to.
        mkdir(&tree.path().join("log/qemu"))?;
        mkdir(&tree.path().join("lib/images"))?;
        capability_cache::restore(&tree.path().join("cache/qemu/capabilities"));

        let host_uuid = random_uuid()?;
        let migration_ports = free_port_range()?;
        write(&tree.path().join("etc/libvirtd.conf"), &libvirtd_conf(&host_uuid))?;
        write(
            &tree.path().join("etc/qemu.conf"),
            &qemu_conf(&migration_ports, tls_dir),
        )?;

        let stderr_path = tree.path().join("libvirtd.stderr");
        let stderr =
            File::create(&stderr_path).map_err(io_error(format!("create {}", stderr_path.display())))?;
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "bash",
            "-c",
            INIT,
            "bash",
        ])
        .arg(tree.path())
        .arg(first_allowed_cpu().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        die_with_parent(&mut cmd);
        let command = shell_words(&cmd);
        let child = cmd.spawn().map_err(|source| RigError::Spawn {
            side: format!("{side} libvirtd"),
            command,
            source,
        })?;
        let socket = tree.path().join("run/libvirt-sock");
        Ok(Starting(
            LibvirtDaemon {
                side: side.to_string(),
                uri: format!("qemu+unix:///system?socket={}", socket.display()),
                host_uuid,
                migration_ports,
                child: Some(child),
                pid_namespace: String::new(),
                started_in: Duration::ZERO,
                tree,
            },
            t,
        ))
    }

    /// The connection URI, for `virsh -c` or a libvirt client.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// `source` or `destination`.
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The `host_uuid` it was configured with: distinct per daemon, or libvirt refuses to
    /// migrate between them ("Attempt to migrate guest to the same host").
    pub fn host_uuid(&self) -> &str {
        &self.host_uuid
    }

    /// The ports it takes incoming migrations on (`migration_port_min..=max`).
    pub fn migration_ports(&self) -> RangeInclusive<u16> {
        self.migration_ports.clone()
    }

    /// How long it took from start until it answered.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Its private tree, as seen from outside its namespace.
    pub fn tree(&self) -> &Path {
        self.tree.path()
    }

    /// Where a path as the daemon (and its QEMUs) see it is, seen from outside: e.g.
    /// `/var/log/libvirt/qemu/x.log` is `<tree>/log/qemu/x.log`. Paths outside the five
    /// private directories are the same for both.
    pub fn host_path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        for (dir, mount) in MOUNTS {
            if let Ok(rest) = inside.strip_prefix(mount) {
                return self.tree.path().join(dir).join(rest);
            }
        }
        inside.to_path_buf()
    }

    /// Runs `virsh -c <uri> <args>` and returns its standard output.
    pub fn virsh(&self, args: &[&str]) -> Result<String, RigError> {
        let mut cmd = Command::new("virsh");
        cmd.arg("-c").arg(&self.uri).args(args).stdin(Stdio::null());
        let command = shell_words(&cmd);
        let out = cmd.output().map_err(|source| RigError::Spawn {
            side: format!("{} virsh", self.side),
            command: command.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(RigError::Virsh {
                command,
                status: describe(out.status),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// `virsh domstate <domain>`: `running`, `shut off`, `paused`, ...; an error if the
    /// daemon does not know the domain.
    pub fn domain_state(&self, domain: &str) -> Result<String, RigError> {
        Ok(self.virsh(&["domstate", domain])?.trim().to_string())
    }

    /// Host process ids of every process in its PID namespace: the init, libvirtd and the
    /// QEMUs it started (and `unshare` itself, while it runs). Empty once it stopped.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.child.iter().map(Child::id).collect();
        if self.pid_namespace.is_empty() {
            return pids;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // A process that exits meanwhile has no link any more: it is not counted.
            let ns = std::fs::read_link(entry.path().join("ns/pid"));
            if ns.is_ok_and(|ns| ns.as_os_str() == self.pid_namespace.as_str()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The guest's serial log for `domain`, where the rig's domain XML puts it
    /// (`/var/log/libvirt/qemu/<domain>.serial` inside), seen from outside.
    pub fn serial_log(&self, domain: &str) -> PathBuf {
        self.host_path(serial_path(domain))
    }

    /// The guest's serial output on this daemon so far: on a migration's destination, only
    /// what the guest printed after it arrived.
    pub fn serial(&self, domain: &str) -> String {
        let bytes = std::fs::read(self.serial_log(domain)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The heartbeats the guest printed on this daemon, oldest first.
    pub fn heartbeats(&self, domain: &str) -> Vec<Heartbeat> {
        self.serial(domain).lines().filter_map(parse_heartbeat).collect()
    }

    /// Waits for a serial line starting with `prefix` on this daemon and returns it.
    pub fn wait_for_line(&self, domain: &str, prefix: &str, timeout: Duration) -> Result<String, RigError> {
        self.wait_for(domain, timeout, &format!("no {prefix:?} line"), |serial| {
            serial.lines().find(|l| l.starts_with(prefix)).map(str::to_string)
        })
    }

    /// Waits until more than `count` heartbeats were printed on this daemon and returns
    /// the newest.
    pub fn wait_for_heartbeat_after(
        &self,
        domain: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Heartbeat, RigError> {
        let what = format!("no heartbeat after the first {count}");
        self.wait_for(domain, timeout, &what, |serial| {
            let beats: Vec<Heartbeat> = serial.lines().filter_map(parse_heartbeat).collect();
            beats.last().copied().filter(|_| beats.len() > count)
        })
    }

    fn wait_for<T>(
        &self,
        domain: &str,
        timeout: Duration,
        what: &str,
        found: impl Fn(&str) -> Option<T>,
    ) -> Result<T, RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = found(&self.serial(domain)) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                let state = match self.domain_state(domain) {
                    Ok(state) => state,
                    Err(e) => e.to_string(),
                };
                return Err(self.failure(format!(
                    "{what} from domain {domain} within {timeout:?} (state: {state}; serial log {})",
                    self.serial_log(domain).display()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The tails of the daemon's log, its stderr and each domain's QEMU log: what to
    /// print when something went wrong, before the tree is removed.
    pub fn diagnostics(&self) -> String {
        let mut files = vec![
            self.tree.path().join("log/libvirtd.log"),
            self.tree.path().join("libvirtd.stderr"),
        ];
        if let Ok(entries) = std::fs::read_dir(self.tree.path().join("log/qemu")) {
            let mut logs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            files.extend(logs);
        }
        files
            .iter()
            .map(|f| format!("--- {}:\n{}", f.display(), tail(f, 1500)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn failure(&self, detail: String) -> RigError {
        RigError::Libvirt {
            side: self.side.clone(),
            detail,
            diagnostics: self.diagnostics(),
        }
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            None => Some("stopped by the rig".into()),
            Some(Ok(Some(status))) => Some(describe(status)),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(format!("unknown state ({e})")),
        }
    }

    /// Kills the daemon and everything in its namespace, and waits until all of it is
    /// gone. A no-op once done.
    pub fn stop(&mut self) {
        let pids = self.pids();
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGKILL to the namespace's init: the kernel kills every other process in the
        // namespace with it, and unshare, its parent, reaps it and exits. (Killing
        // unshare first would work too, through --kill-child, but would leave the init
        // to a pid 1 outside that may never reap it.)
        match pids.iter().copied().find(|&pid| is_namespace_init(pid)) {
            Some(init) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &init.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
            None => {
                let _ = child.kill();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
        // The namespace's processes are not our children: wait for them by pid (each is
        // reaped by its parent in the namespace, or by this process's init if orphaned).
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|&pid| running(pid)) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        capability_cache::save(&self.tree.path().join("cache/qemu/capabilities"));
    }
}

impl Drop for LibvirtDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A daemon started but not yet answering.
pub(crate) struct Starting(LibvirtDaemon, Instant);

impl Starting {
    /// Waits until `virsh uri` answers, then learns the daemon's PID namespace.
    pub(crate) fn wait_until_ready(self) -> Result<LibvirtDaemon, RigError> {
        let Starting(mut daemon, t) = self;
        let deadline = Instant::now() + READY_TIMEOUT;
        let socket = daemon.tree.path().join("run/libvirt-sock");
        loop {
            if socket.exists() && daemon.virsh(&["uri"]).is_ok() {
                break;
            }
            if let Some(status) = daemon.exited() {
                return Err(daemon.failure(format!("exited ({status}) before answering")));
            }
            if Instant::now() > deadline {
                return Err(daemon.failure(format!("did not answer within {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(POLL);
        }
        daemon.started_in = t.elapsed();
        if let Some(child) = &daemon.child {
            let link = PathBuf::from(format!("/proc/{}/ns/pid_for_children", child.id()));
            let ns = std::fs::read_link(&link).map_err(io_error(format!("read {}", link.display())))?;
            daemon.pid_namespace = ns.to_string_lossy().into_owned();
        }
        Ok(daemon)
    }
}

/// Where the rig's domain XML sends the guest's serial port, as the daemon sees it: each
/// daemon has its own file at that path, so source and destination logs stay apart.
pub(crate) fn serial_path(domain: &str) -> String {
    format!("/var/log/libvirt/qemu/{domain}.serial")
}

fn libvirtd_conf(host_uuid: &str) -> String {
    format!(
        r#"# Written by vfio-migrate's rig for a private daemon.
# Distinct per daemon: libvirt refuses to migrate to a host with its own UUID.
host_uuid = "{host_uuid}"
# Only root can reach the socket (it is in a root-only temporary directory).
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
# Warnings and errors, in the tree, for diagnostics.
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"#
    )
}

fn qemu_conf(ports: &RangeInclusive<u16>, tls_dir: Option<&Path>) -> String {
    let tls = match tls_dir {
        // One directory with the CA, the server's and the client's certificates: the
        // daemon listens with the first and connects with the second.
        Some(dir) => format!(
            "migrate_tls_x509_cert_dir = \"{}\"\nmigrate_tls_x509_verify = 1\n",
            dir.display()
        ),
        None => String::new(),
    };
    format!(
        r#"# Written by vfio-migrate's rig for a private daemon.
user = "root"
group = "root"
# No SELinux/AppArmor labelling, no cgroups, no per-domain /dev: nothing global touched.
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# QEMU's stderr goes straight to a file: no virtlogd needed.
stdio_handler = "file"
# Ranges distinct per daemon, so that concurrent pairs do not collide.
migration_port_min = {}
migration_port_max = {}
{tls}"#,
        ports.start(),
        ports.end()
    )
}

/// Whether libvirtd, virsh and unshare are installed and we are root; else why not.
pub(crate) fn check_available() -> Result<(), RigError> {
    let unavailable = |why: String| Err(RigError::LibvirtUnavailable { why });
    for tool in ["libvirtd", "virsh", "unshare", "mount", "taskset", "bash"] {
        if find_in_path(tool).is_none() {
            return unavailable(format!(
                "`{tool}` is not installed (scripts/install-deps installs libvirt)"
            ));
        }
    }
    if find_in_path("libvirtd").is_some_and(|_| !qemu_driver_installed()) {
        return unavailable("libvirt's QEMU driver is not installed (libvirt-daemon-driver-qemu)".into());
    }
    if !is_root() {
        return unavailable("private libvirt daemons need root (mount and PID namespaces)".into());
    }
    Ok(())
}

fn qemu_driver_installed() -> bool {
    let Ok(entries) = std::fs::read_dir("/usr/lib") else {
        return false;
    };
    // /usr/lib/<triplet>/libvirt/connection-driver/ on Debian, /usr/lib64/... elsewhere.
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.push(PathBuf::from("/usr/lib"));
    dirs.push(PathBuf::from("/usr/lib64"));
    dirs.iter().any(|d| {
        d.join("libvirt/connection-driver/libvirt_driver_qemu.so")
            .exists()
    })
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // libvirtd lives in sbin, which a root PATH has but not every environment.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// The lowest CPU this process may run on (`Cpus_allowed_list: 0-1`), else 0.
fn first_allowed_cpu() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            first.parse().ok()
        })
        .unwrap_or(0)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A random (version 4) UUID from the kernel. libvirt refuses UUIDs of one repeated
/// digit, and two daemons must never share one.
fn random_uuid() -> Result<String, RigError> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(io_error("read /proc/sys/kernel/random/uuid"))?;
    Ok(uuid.trim().to_string())
}

/// A block of [`PORTS_PER_DAEMON`] ports, at a random place so that daemons of concurrent
/// test processes rarely pick the same, each of which could be bound just now. (libvirt
/// binds them only when a migration comes in: another process may take one meanwhile;
/// on a test machine that is rare enough.)
fn free_port_range() -> Result<RangeInclusive<u16>, RigError> {
    let blocks = (PORT_BLOCKS.end() - PORT_BLOCKS.start()) / PORTS_PER_DAEMON;
    for _ in 0..100 {
        let random = RandomState::new().build_hasher().finish();
        let block = u16::try_from(random % u64::from(blocks)).unwrap_or(0);
        let start = PORT_BLOCKS.start() + block * PORTS_PER_DAEMON;
        let range = start..=start + PORTS_PER_DAEMON - 1;
        if range
            .clone()
            .all(|port| TcpListener::bind(("0.0.0.0", port)).is_ok())
        {
            return Ok(range);
        }
    }
    Err(RigError::Options(format!(
        "no block of {PORTS_PER_DAEMON} free ports in {PORT_BLOCKS:?} after 100 tries"
    )))
}

/// Whether `pid` is PID 1 of its own (nested) namespace: `NSpid: <host pid> 1`.
fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                ids.len() > 1 && ids.last() == Some(&"1")
            })
    })
}

fn running(pid: u32) -> bool {
    // A zombie has exited: only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z'))
    })
}

fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned());
    match text {
        Ok(text) => {
            let text = text.trim_end();
            let start = (text.len().saturating_sub(max)..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[start..].to_string()
        }
        Err(e) => format!("({e})"),
    }
}

fn mkdir(dir: &Path) -> Result<(), RigError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))
}

fn write(path: &Path, text: &str) -> Result<(), RigError> {
    std::fs::write(path, text).map_err(io_error(format!("write {}", path.display())))
}

/// libvirt's QEMU capability cache, kept between daemons and test runs.
///
/// A new daemon probes QEMU's capabilities on start (~8 s); with a previous daemon's
/// cache it takes ~0.1 s. libvirt checks each cached file against the QEMU binary and
/// its own version and probes again if it is stale, so a stale copy costs only time.
mod capability_cache {
    use std::path::{Path, PathBuf};

    /// Shared by every test process of the machine.
    fn dir() -> PathBuf {
        std::env::temp_dir().join("vfio-migrate-rig-qemu-capabilities")
    }

    /// Copies the cached files into a new daemon's cache (best effort: without them it
    /// only starts slower).
    pub(super) fn restore(to: &Path) {
        copy_new(&dir(), to);
    }

    /// Copies the daemon's cached files that the shared cache lacks or has older, each through a
    /// temporary name and a rename, so that a concurrent reader never sees half a file.
    pub(super) fn save(from: &Path) {
        copy_new(from, &dir());
    }

    fn copy_new(from: &Path, to: &Path) {
        let Ok(entries) = std::fs::read_dir(from) else {
            return;
        };
        if std::fs::create_dir_all(to).is_err() {
            return;
        }
        for entry in entries.flatten() {
            let name = entry.file_name();
            let target = to.join(&name);
            if !name.to_string_lossy().ends_with(".xml") {
                continue;
            }
            // The same name after a QEMU or libvirt upgrade holds a fresh probe: replace.
            let old = std::fs::read(&target).ok();
            if old.is_some() && old == std::fs::read(entry.path()).ok() {
                continue;
            }
            let partial = to.join(format!(".{}.{}", name.to_string_lossy(), std::process::id()));
            if std::fs::copy(entry.path(), &partial).is_ok() {
                let _ = std::fs::rename(&partial, &target);
            }
            let _ = std::fs::remove_file(&partial);
        }
    }
}
