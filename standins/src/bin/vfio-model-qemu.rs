//! `vfio-model-qemu`: QEMU with modelled VFIO devices, for libvirt's `<emulator>`.
//!
//! `vfio-model-qemu [--qemu QEMU --] QEMU-ARGS...` runs QEMU (`qemu-system-x86_64` from
//! `PATH` unless `--qemu` names it) with QEMU-ARGS. When `VFIO_MODEL` holds a device
//! model and libvirt's monitor is on the command line, libvirt is served by the device
//! model's proxy in front of a private monitor; otherwise QEMU runs exactly as asked.
//! See `standins::devmodel::emulator` for the whole story.
//!
//! A test-bench tool: the product never runs it.

use std::ffi::OsString;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use standins::devmodel::emulator::{
    monitor_chardev, private_monitor_args, role_of, take_inherited_socket, EmulatorConfig, MonitorSocket,
    CONFIG_ENV,
};
use standins::devmodel::{Proxy, ProxyConfig, Role};

/// The first argument of the proxy process this program starts (never one of QEMU's).
const SERVE: &str = "--vfio-model-serve";

/// How long the proxy waits for QEMU's monitor to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the proxy looks whether QEMU is still there.
const POLL: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == SERVE) {
        return match serve(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vfio-model-qemu proxy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut qemu = OsString::from("qemu-system-x86_64");
    if args.first().is_some_and(|a| a == "--qemu") && args.get(2).is_some_and(|a| a == "--") {
        qemu = args[1].clone();
        args = args.split_off(3);
    }
    // Only returns if QEMU could not be run.
    eprintln!("vfio-model-qemu: {}", launch(&qemu, args));
    ExitCode::from(127)
}

/// Runs QEMU in this process, with the device model's proxy beside it when asked for.
fn launch(qemu: &OsString, args: Vec<OsString>) -> String {
    let Some(config) = std::env::var_os(CONFIG_ENV) else {
        return exec(qemu, &args);
    };
    let Some((index, socket)) = monitor_chardev(&args) else {
        // libvirt probing QEMU's capabilities, or a QEMU without libvirt's monitor.
        return exec(qemu, &args);
    };
    if let Err(e) = config
        .to_str()
        .ok_or_else(|| format!("{CONFIG_ENV} is not UTF-8"))
        .and_then(EmulatorConfig::from_json)
    {
        return e;
    }
    let dir = match private_dir() {
        Ok(dir) => dir,
        Err(e) => return format!("cannot create a directory for QEMU's monitor: {e}"),
    };
    let upstream = dir.join("qmp.sock");
    // Owned here so that it is closed before QEMU runs: only the proxy serves it.
    let (listen, inherited) = match &socket {
        MonitorSocket::Fd(fd) => match take_inherited_socket(*fd) {
            Ok(owned) => (format!("fd:{fd}"), Some(owned)),
            Err(e) => return format!("libvirt's monitor fd={fd}: {e}"),
        },
        MonitorSocket::Path(path) => (format!("path:{}", path.display()), None),
    };
    let role = match role_of(&args) {
        Role::Source => "source",
        Role::Destination => "destination",
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("cannot find this program: {e}"),
    };
    // QEMU's child from the exec on; it leaves when QEMU closes its monitor or exits.
    let spawned = Command::new(exe)
        .arg(SERVE)
        .arg(&listen)
        .arg(&upstream)
        .arg(role)
        .stdin(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        return format!("cannot start the device model's proxy: {e}");
    }
    drop(inherited);
    exec(qemu, &private_monitor_args(&args, index, &upstream))
}

/// Replaces this process with QEMU; returns only the reason it could not.
fn exec(qemu: &OsString, args: &[OsString]) -> String {
    let error = Command::new(qemu).args(args).exec();
    format!("cannot run {}: {error}", qemu.to_string_lossy())
}

/// A new root-only directory for QEMU's private monitor socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Pids repeat across PID namespaces (each libvirt daemon of the rig has one): the
    // time tells two QEMUs apart.
    let dir = std::env::temp_dir().join(format!("vfio-model-qemu-{}-{nanos:08x}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The proxy process: `SERVE fd:N|path:P UPSTREAM source|destination`.
fn serve(args: &[OsString]) -> Result<(), String> {
    let [listen, upstream, role] = args else {
        return Err(format!("usage: {SERVE} fd:N|path:P UPSTREAM source|destination"));
    };
    let parent = std::os::unix::process::parent_id();
    let config = std::env::var(CONFIG_ENV)
        .map_err(|e| format!("{CONFIG_ENV}: {e}"))
        .and_then(|c| EmulatorConfig::from_json(&c))?;
    let role = match role.to_str() {
        Some("source") => Role::Source,
        Some("destination") => Role::Destination,
        _ => return Err(format!("unknown role {role:?}")),
    };
    let upstream = PathBuf::from(upstream);
    let listen = listen.to_string_lossy();
    let (listen, listener) = match (listen.strip_prefix("fd:"), listen.strip_prefix("path:")) {
        (Some(fd), _) => {
            let fd = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
            let owned = take_inherited_socket(fd).map_err(|e| format!("fd {fd}: {e}"))?;
            let listener = UnixListener::from(owned);
            let path = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(format!("fd:{fd}")));
            (path, Some(listener))
        }
        (None, Some(path)) => (PathBuf::from(path), None),
        (None, None) => return Err(format!("bad listen address {listen:?}")),
    };
    let cfg = ProxyConfig {
        upstream: upstream.clone(),
        listen,
        role,
        devices: config.devices,
        link_bytes_per_sec: config.link_bytes_per_sec,
    };
    let parent_gone = || std::os::unix::process::parent_id() != parent;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let served = runtime.block_on(async {
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        let proxy = loop {
            if parent_gone() {
                // QEMU exited before its monitor answered: nothing to serve.
                return Ok(());
            }
            if upstream.exists() {
                let started = match &listener {
                    Some(listener) => match listener.try_clone() {
                        Ok(listener) => Proxy::start_on(cfg.clone(), listener).await,
                        Err(e) => return Err(format!("duplicate the monitor socket: {e}")),
                    },
                    None => Proxy::start(cfg.clone()).await,
                };
                match started {
                    Ok(proxy) => break proxy,
                    // QEMU may have bound the socket but not listen yet.
                    Err(e) if Instant::now() > deadline => return Err(e.to_string()),
                    Err(_) => {}
                }
            } else if Instant::now() > deadline {
                return Err(format!("QEMU did not create {} in time", upstream.display()));
            }
            tokio::time::sleep(POLL).await;
        };
        drop(listener);
        // Connected: nobody else is to use QEMU's monitor, so its socket goes now.
        remove_private(&upstream);
        while !proxy.upstream_closed() && !parent_gone() {
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    });
    remove_private(&upstream);
    served
}

/// Removes QEMU's private monitor socket and its directory, if still there.
fn remove_private(upstream: &std::path::Path) {
    let _ = std::fs::remove_file(upstream);
    if let Some(dir) = upstream.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}
