//! The device model inside libvirt's monitor path: an `<emulator>` wrapper.
//!
//! libvirt owns the monitor of the QEMUs it starts, so the proxy cannot simply be put in
//! front of one as the QMP tests do. Instead the domain's `<emulator>` is a small script
//! ([`emulator_script`]) that runs the `vfio-model-qemu` binary, which sees QEMU's
//! command line before QEMU does:
//!
//! - **No device model asked for** ([`CONFIG_ENV`] unset), or **no monitor** on the
//!   command line (libvirt probing QEMU's capabilities with `-qmp unix:...`): it execs the
//!   real QEMU with the same arguments.
//! - **A domain start** with a device model: libvirt hands QEMU a socket it already bound
//!   and listens on, `-chardev socket,id=charmonitor,fd=N,server=on,wait=off` (or, on
//!   other versions, `path=...`). The wrapper starts a proxy process that serves
//!   libvirt on that socket, gives QEMU a private monitor socket instead
//!   ([`private_monitor_args`]), and *execs* the real QEMU in its own process. libvirt's
//!   pid is QEMU's, as without the wrapper: libvirt's signals, its `/proc/PID/task`
//!   look-ups of vCPU threads and the exit status all reach QEMU itself. The proxy
//!   (QEMU's child) connects upstream once QEMU listens, removes the private socket,
//!   and exits when QEMU closes the monitor or exits (it is then re-parented).
//!   Its role is [`Role::Destination`] when QEMU is started with `-incoming`.
//!
//! The devices come from [`CONFIG_ENV`], a JSON [`EmulatorConfig`], which a libvirt
//! domain sets with `<qemu:commandline><qemu:env .../>`: libvirt runs the emulator with
//! its own fixed environment plus those, and carries them to the destination with the
//! domain's definition, so both sides model the same devices. The script's path and
//! contents depend only on the wrapper and QEMU binaries, never on a domain, so libvirt's
//! QEMU capability cache (keyed by the emulator's path and change time) stays valid
//! from one daemon to the next.

use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::Role;
use crate::vfio::ModelDevice;

/// The environment variable that carries the wrapper's [`EmulatorConfig`] (JSON).
pub const CONFIG_ENV: &str = "VFIO_MODEL";

/// The chardev id libvirt gives QEMU's monitor.
const MONITOR_ID: &str = "charmonitor";

/// What the wrapper models: the devices and the link speed for their state, as in
/// [`super::ProxyConfig`] (the role comes from QEMU's command line, the sockets from
/// libvirt's). Faults are not carried: the devices behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// The modelled devices.
    pub devices: Vec<ModelDevice>,
    /// The migration link's speed for device state, in bytes per second.
    pub link_bytes_per_sec: u64,
}

impl EmulatorConfig {
    /// The JSON form [`CONFIG_ENV`] carries.
    pub fn to_json(&self) -> String {
        let devices: Vec<Value> = self
            .devices
            .iter()
            .map(|d| {
                let mut device = json!({
                    "id": d.id,
                    "precopy": d.precopy,
                    "p2p": d.p2p,
                    "state_size": d.state_size,
                    "migration_events": d.migration_events,
                    "allow_runtime_migration_events": d.allow_runtime_migration_events,
                });
                if let (Some(host), Some(object)) = (&d.host, device.as_object_mut()) {
                    object.insert("host".into(), json!(host));
                }
                device
            })
            .collect();
        json!({"devices": devices, "link_bytes_per_sec": self.link_bytes_per_sec}).to_string()
    }

    /// Parses [`EmulatorConfig::to_json`]'s form. Absent device fields take
    /// [`ModelDevice::new`]'s values; an unknown field is an error (a typo would
    /// otherwise silently model another device).
    pub fn from_json(text: &str) -> Result<EmulatorConfig, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("{CONFIG_ENV}: {e}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| format!("{CONFIG_ENV}: not a JSON object"))?;
        only_known(object, &["devices", "link_bytes_per_sec"], "the configuration")?;
        let link_bytes_per_sec = object
            .get("link_bytes_per_sec")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("{CONFIG_ENV}: link_bytes_per_sec must be a number"))?;
        let devices = object
            .get("devices")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{CONFIG_ENV}: devices must be an array"))?
            .iter()
            .map(device_from_json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmulatorConfig {
            devices,
            link_bytes_per_sec,
        })
    }
}

fn only_known(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(format!("{CONFIG_ENV}: unknown field {key:?} in {what}")),
        None => Ok(()),
    }
}

fn device_from_json(value: &Value) -> Result<ModelDevice, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{CONFIG_ENV}: a device is not a JSON object"))?;
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{CONFIG_ENV}: a device has no string id"))?;
    let what = format!("device {id:?}");
    only_known(
        object,
        &[
            "id",
            "precopy",
            "p2p",
            "state_size",
            "migration_events",
            "allow_runtime_migration_events",
            "host",
        ],
        &what,
    )?;
    let mut device = ModelDevice::new(id);
    let flag = |name: &str, default: bool| -> Result<bool, String> {
        match object.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("{CONFIG_ENV}: {what}: {name} must be true or false")),
        }
    };
    device.precopy = flag("precopy", device.precopy)?;
    device.p2p = flag("p2p", device.p2p)?;
    device.migration_events = flag("migration_events", device.migration_events)?;
    device.allow_runtime_migration_events = flag(
        "allow_runtime_migration_events",
        device.allow_runtime_migration_events,
    )?;
    if let Some(size) = object.get("state_size") {
        device.state_size = size
            .as_u64()
            .ok_or_else(|| format!("{CONFIG_ENV}: {what}: state_size must be a number"))?;
    }
    if let Some(host) = object.get("host") {
        let host = host
            .as_str()
            .ok_or_else(|| format!("{CONFIG_ENV}: {what}: host must be a string"))?;
        device.host = Some(host.to_string());
    }
    Ok(device)
}

/// Where libvirt's monitor socket is, as QEMU's command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorSocket {
    /// `fd=N`: a socket libvirt bound, listens on and passed down (inherited).
    Fd(RawFd),
    /// `path=P`: QEMU is to create and listen on it (libvirt connects, retrying).
    Path(PathBuf),
}

/// Finds libvirt's monitor, `-chardev socket,id=charmonitor,...`: the index of that
/// `-chardev`'s value in `args` and the socket, or `None` when QEMU runs without one
/// (e.g. libvirt probing its capabilities with `-qmp`).
pub fn monitor_chardev(args: &[OsString]) -> Option<(usize, MonitorSocket)> {
    let index = args.windows(2).position(|pair| {
        pair[0] == "-chardev"
            && chardev_options(&pair[1]).is_some_and(|(backend, options)| {
                backend == "socket" && options.iter().any(|(k, v)| k == "id" && v == MONITOR_ID)
            })
    })? + 1;
    let (_, options) = chardev_options(&args[index])?;
    let socket = options.iter().find_map(|(key, value)| match key.as_str() {
        "fd" => value.parse().ok().map(MonitorSocket::Fd),
        "path" => Some(MonitorSocket::Path(PathBuf::from(value))),
        _ => None,
    })?;
    Some((index, socket))
}

/// A `-chardev` value split into its backend and `key=value` options (QEMU's `,,`
/// escape is not undone: libvirt's monitor options never need it).
fn chardev_options(value: &OsStr) -> Option<(String, Vec<(String, String)>)> {
    let value = value.to_str()?;
    let mut parts = value.split(',');
    let backend = parts.next()?.to_string();
    let options = parts
        .map(|part| match part.split_once('=') {
            Some((key, value)) => (key.to_string(), value.to_string()),
            None => (part.to_string(), String::new()),
        })
        .collect();
    Some((backend, options))
}

/// QEMU's arguments with libvirt's monitor (the `-chardev` value at `index`, from
/// [`monitor_chardev`]) moved to a private socket at `private`, which QEMU creates and
/// listens on; every other argument, and the chardev's id, stay as they are.
pub fn private_monitor_args(args: &[OsString], index: usize, private: &Path) -> Vec<OsString> {
    let mut out = args.to_vec();
    let mut value = OsString::from(format!("socket,id={MONITOR_ID},path="));
    value.push(private);
    value.push(",server=on,wait=off");
    out[index] = value;
    out
}

/// The side QEMU is on: the destination when it is started with `-incoming`.
pub fn role_of(args: &[OsString]) -> Role {
    if args.iter().any(|a| a == "-incoming") {
        Role::Destination
    } else {
        Role::Source
    }
}

/// Writes (if it is not there yet) the script to give libvirt as a domain's
/// `<emulator>`: it runs `wrapper` (the `vfio-model-qemu` binary) over `qemu` (a path,
/// or a name looked up on `PATH` now). The script's path depends only on those two and
/// QEMU's modification time, and an unchanged script is not rewritten, so its change
/// time, which libvirt's capability cache is checked against, stays the same from one
/// daemon (and test run) to the next. Returns its path.
pub fn emulator_script(wrapper: &Path, qemu: &Path) -> io::Result<PathBuf> {
    let qemu = find_program(qemu)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", qemu.display())))?;
    let wrapper = std::fs::canonicalize(wrapper)?;
    let script = format!(
        "#!/bin/sh\n\
         # A libvirt <emulator>: QEMU with modelled VFIO devices (vfio-migrate's test bench).\n\
         exec {} --qemu {} -- \"$@\"\n",
        shell_quote(wrapper.as_os_str()),
        shell_quote(qemu.as_os_str()),
    );
    let mut hasher = std::hash::DefaultHasher::new();
    script.hash(&mut hasher);
    let modified = std::fs::metadata(&qemu).and_then(|m| m.modified()).ok();
    modified.hash(&mut hasher);
    let dir = std::env::temp_dir().join("vfio-migrate-devmodel-emulators");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("qemu-{:016x}", hasher.finish()));
    if std::fs::read(&path).is_ok_and(|old| old == script.as_bytes()) {
        return Ok(path);
    }
    // Through a temporary name and a rename: a concurrent libvirt never runs half a script.
    let partial = dir.join(format!(".qemu-{}-{:016x}", std::process::id(), hasher.finish()));
    std::fs::write(&partial, script)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// `program` if it is a path to a file, else the first file of that name on `PATH`.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `'...'` for sh, with embedded single quotes escaped.
fn shell_quote(s: &OsStr) -> String {
    let s = String::from_utf8_lossy(s.as_bytes());
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Takes ownership of an inherited file descriptor that is a socket (checked through
/// `/proc/self/fd`), e.g. the monitor socket libvirt passed down as `fd=N`.
pub fn take_inherited_socket(fd: RawFd) -> io::Result<OwnedFd> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    if !target.as_os_str().as_bytes().starts_with(b"socket:") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket ({})", target.display()),
        ));
    }
    Ok(own_fd(fd))
}

/// Owns `fd`, which the caller checked is open.
#[allow(unsafe_code)]
fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is open (its /proc/self/fd link was just read) and was inherited from
    // the process that exec'd this one: nothing else in this process owns or uses it, so
    // the `OwnedFd` is its only owner and closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn libvirts_monitor_is_found_and_moved_to_a_private_socket() {
        let argv = args(&[
            "-name",
            "guest=g,debug-threads=on",
            "-S",
            "-chardev",
            "file,id=charserial0,path=/dev/fdset/0,append=on",
            "-chardev",
            "socket,id=charmonitor,fd=31,server=on,wait=off",
            "-mon",
            "chardev=charmonitor,id=monitor,mode=control",
        ]);
        assert_eq!(monitor_chardev(&argv), Some((6, MonitorSocket::Fd(31))));
        let moved = private_monitor_args(&argv, 6, Path::new("/tmp/x/qmp.sock"));
        assert_eq!(
            moved[6],
            "socket,id=charmonitor,path=/tmp/x/qmp.sock,server=on,wait=off"
        );
        assert_eq!(moved[..6], argv[..6]);
        assert_eq!(moved[7..], argv[7..]);
        assert_eq!(role_of(&argv), Role::Source);

        let by_path = args(&[
            "-incoming",
            "defer",
            "-chardev",
            "socket,id=charmonitor,path=/var/lib/libvirt/qemu/m.sock,server=on,wait=off",
        ]);
        assert_eq!(
            monitor_chardev(&by_path),
            Some((3, MonitorSocket::Path("/var/lib/libvirt/qemu/m.sock".into())))
        );
        assert_eq!(role_of(&by_path), Role::Destination);
    }

    #[test]
    fn a_capability_probe_has_no_monitor_to_model() {
        let probe = args(&[
            "-S",
            "-no-user-config",
            "-nodefaults",
            "-nographic",
            "-machine",
            "none,accel=kvm:tcg",
            "-qmp",
            "unix:/var/lib/libvirt/qemu/capabilities.monitor.sock,server=on,wait=off",
        ]);
        assert_eq!(monitor_chardev(&probe), None);
        let other_socket = args(&["-chardev", "socket,id=charchannel0,fd=30,server=on,wait=off"]);
        assert_eq!(monitor_chardev(&other_socket), None);
    }

    #[test]
    fn the_configuration_round_trips_through_json() {
        let config = EmulatorConfig {
            devices: vec![
                ModelDevice {
                    precopy: true,
                    state_size: 64 << 20,
                    host: Some("0000:65:00.0".into()),
                    ..ModelDevice::new("gpu0")
                },
                ModelDevice {
                    state_size: 8 << 20,
                    ..ModelDevice::new("nic0")
                },
            ],
            link_bytes_per_sec: 128 << 20,
        };
        assert_eq!(EmulatorConfig::from_json(&config.to_json()), Ok(config));
        let short = EmulatorConfig::from_json(r#"{"devices":[{"id":"a"}],"link_bytes_per_sec":1}"#);
        assert_eq!(short.map(|c| c.devices), Ok(vec![ModelDevice::new("a")]));
        for bad in [
            r#"{"devices":[{"id":"a","precopy":1}],"link_bytes_per_sec":1}"#,
            r#"{"devices":[{"id":"a","pre_copy":true}],"link_bytes_per_sec":1}"#,
            r#"{"devices":[],"link":1}"#,
            r#"[]"#,
        ] {
            assert!(EmulatorConfig::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_script_is_written_once_per_wrapper_and_qemu() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (wrapper, qemu) = (dir.path().join("wrap'per"), dir.path().join("qemu"));
        for file in [&wrapper, &qemu] {
            std::fs::write(file, "").unwrap_or_else(|e| panic!("{e}"));
        }
        let first = emulator_script(&wrapper, &qemu).unwrap_or_else(|e| panic!("{e}"));
        let changed = std::fs::metadata(&first).and_then(|m| m.modified()).ok();
        let again = emulator_script(&wrapper, &qemu).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again);
        assert_eq!(std::fs::metadata(&again).and_then(|m| m.modified()).ok(), changed);
        let text = std::fs::read_to_string(&first).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains(r"wrap'\''per' --qemu '"), "{text}");
        assert!(text.ends_with("-- \"$@\"\n"), "{text}");
        let other = emulator_script(&qemu, &wrapper).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(first, other);
        for script in [first, other] {
            let _ = std::fs::remove_file(script);
        }
    }
}
