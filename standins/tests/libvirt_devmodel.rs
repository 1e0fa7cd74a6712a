//! The VFIO device model under libvirt: the domain's `<emulator>` is the
//! `vfio-model-qemu` wrapper, so a domain libvirt starts has modelled `vfio-pci` devices
//! in its QOM tree, and libvirt relays their `VFIO_MIGRATION` events while it migrates
//! the domain itself (`virsh migrate --live --p2p`, libvirt answering `pre-switchover`).
//!
//! Without libvirt (or without root) the test says it is skipped and passes, except under
//! `CI_REQUIRE_LIBVIRT=1`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rig::{GuestParams, LibvirtDaemon, LibvirtPair, LibvirtPairOptions, RigError};
use serde_json::{json, Value};
use standins::devmodel::emulator::{emulator_script, EmulatorConfig, CONFIG_ENV};
use standins::vfio::ModelDevice;

const MIB: u64 = 1024 * 1024;
const DOMAIN: &str = "rig-vfio";

/// The demo's devices: a GPU with pre-copy and 64 MiB of state, a NIC that only
/// stop-copies its 8 MiB; their state crosses a 128 MiB/s link.
fn config() -> EmulatorConfig {
    EmulatorConfig {
        devices: vec![
            ModelDevice {
                precopy: true,
                state_size: 64 * MIB,
                ..ModelDevice::new("gpu0")
            },
            ModelDevice {
                state_size: 8 * MIB,
                ..ModelDevice::new("nic0")
            },
        ],
        link_bytes_per_sec: 128 * MIB,
    }
}

fn skip(why: &str) {
    assert!(
        std::env::var("CI_REQUIRE_LIBVIRT").as_deref() != Ok("1"),
        "{why}; CI_REQUIRE_LIBVIRT=1 forbids skipping"
    );
    eprintln!("skipped: {why}");
}

/// Starts a pair whose domain runs through the wrapper, or returns `None` (skipped).
fn start() -> Option<LibvirtPair> {
    let wrapper = Path::new(env!("CARGO_BIN_EXE_vfio-model-qemu"));
    let script = match emulator_script(wrapper, Path::new("qemu-system-x86_64")) {
        Ok(script) => script,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip(&format!("no QEMU: {e}"));
            return None;
        }
        Err(e) => panic!("write the emulator script: {e}"),
    };
    let t = Instant::now();
    let pair = LibvirtPair::start_or_skip(&LibvirtPairOptions {
        guest: GuestParams {
            wss_mb: 64,
            rate_mb: 20,
        },
        emulator: Some(script),
        emulator_env: vec![(CONFIG_ENV.to_string(), config().to_json())],
        domain: DOMAIN.into(),
        ..LibvirtPairOptions::default()
    })?;
    eprintln!(
        "libvirt pair up in {:?}: daemons answered in {:?} and {:?}, domain booted in {:?}",
        t.elapsed(),
        pair.source.started_in(),
        pair.destination.started_in(),
        pair.booted_in(),
    );
    Some(pair)
}

fn check<T>(pair: &LibvirtPair, what: &str, result: Result<T, RigError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}\n{}", pair.diagnostics()))
}

/// A QMP command through libvirt (`virsh qemu-monitor-command`); its `return`.
fn qmp(pair: &LibvirtPair, daemon: &LibvirtDaemon, command: Value) -> Value {
    let out = check(
        pair,
        "virsh qemu-monitor-command",
        daemon.virsh(&["qemu-monitor-command", DOMAIN, &command.to_string()]),
    );
    let reply: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    match reply.get("return") {
        Some(value) => value.clone(),
        None => panic!("{command} failed: {reply}"),
    }
}

/// The `vfio-pci` devices under `/machine/peripheral`, each with its `migration-events`.
fn modelled_devices(pair: &LibvirtPair, daemon: &LibvirtDaemon) -> Vec<(String, bool)> {
    let list = qmp(
        pair,
        daemon,
        json!({"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}}),
    );
    let mut devices = Vec::new();
    for entry in list.as_array().into_iter().flatten() {
        if entry["type"] != "child<vfio-pci>" {
            continue;
        }
        let name = entry["name"].as_str().unwrap_or_default().to_string();
        let events = qmp(
            pair,
            daemon,
            json!({"execute": "qom-get", "arguments": {
                "path": format!("/machine/peripheral/{name}"), "property": "migration-events"}}),
        );
        devices.push((name, events == json!(true)));
    }
    devices.sort();
    devices
}

/// The host pids of a daemon's processes whose command line contains `needle`.
fn processes(daemon: &LibvirtDaemon, needle: &str) -> Vec<u32> {
    daemon
        .pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
}

fn alive(pid: u32) -> bool {
    // A zombie has exited: only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !state.is_some_and(|s| s.starts_with('Z'))
    })
}

/// `virsh qemu-monitor-event --loop` on the source, its output in a file.
struct EventListener {
    child: Child,
    out: PathBuf,
}

impl EventListener {
    fn start(daemon: &LibvirtDaemon, dir: &Path) -> EventListener {
        let out = dir.join("events.txt");
        let file = std::fs::File::create(&out).unwrap_or_else(|e| panic!("{e}"));
        // Line-buffered, so that each event is in the file as soon as virsh prints it.
        let child = Command::new("stdbuf")
            .args(["-oL", "virsh", "-c", daemon.uri(), "qemu-monitor-event", DOMAIN])
            .args(["--loop", "--event", "VFIO_MIGRATION"])
            .stdin(Stdio::null())
            .stdout(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start virsh qemu-monitor-event: {e}"));
        EventListener { child, out }
    }

    /// (device id, state) of every event so far, in the order libvirt relayed them.
    fn events(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("VFIO_MIGRATION"))
            .filter_map(|l| {
                let data: Value = serde_json::from_str(&l[l.find('{')?..]).ok()?;
                Some((
                    data["device-id"].as_str()?.to_string(),
                    data["device-state"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Waits until `done` holds for the events, or fails after `timeout`.
    fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[(String, String)]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.events()) {
            assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}: {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One device's states, in order.
fn states_of(events: &[(String, String)], device: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(id, _)| id == device)
        .map(|(_, state)| state.clone())
        .collect()
}

#[test]
fn libvirt_lists_the_modelled_devices_and_relays_their_events_through_a_migration() {
    let Some(pair) = start() else {
        return;
    };
    let (source, destination) = (&pair.source, &pair.destination);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    // libvirt's QEMU shows both devices, with events on.
    let expected = vec![("gpu0".to_string(), true), ("nic0".to_string(), true)];
    assert_eq!(modelled_devices(&pair, source), expected);

    // The process libvirt started and tracks is QEMU itself (the wrapper exec'd it); the
    // device model's proxy is its child.
    let qemus = processes(source, &format!("guest={DOMAIN}"));
    assert_eq!(qemus.len(), 1, "one QEMU: {qemus:?}");
    let qemu = qemus[0];
    let pid_file = source.host_path(format!("/run/libvirt/qemu/{DOMAIN}.pid"));
    let tracked =
        std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let in_namespace =
        status_field(qemu, "NSpid:").and_then(|ids| ids.split_whitespace().last().map(String::from));
    assert_eq!(
        in_namespace.as_deref(),
        Some(tracked.trim()),
        "libvirt tracks QEMU's pid"
    );
    let proxies = processes(source, "--vfio-model-serve");
    assert_eq!(proxies.len(), 1, "one proxy: {proxies:?}");
    assert_eq!(status_field(proxies[0], "PPid:"), Some(qemu.to_string()));

    // libvirt relays VFIO_MIGRATION as soon as the listener is registered: a pause and a
    // resume stop and restart both devices.
    let listener = EventListener::start(source, dir.path());
    let ready = Instant::now();
    loop {
        check(&pair, "virsh suspend", source.virsh(&["suspend", DOMAIN]));
        check(&pair, "virsh resume", source.virsh(&["resume", DOMAIN]));
        std::thread::sleep(Duration::from_millis(200));
        if !listener.events().is_empty() {
            break;
        }
        assert!(ready.elapsed() < Duration::from_secs(10), "no event relayed");
    }
    listener.wait_for(Duration::from_secs(5), "both devices running again", |events| {
        ["gpu0", "nic0"]
            .iter()
            .all(|d| states_of(events, d).last().map(String::as_str) == Some("running"))
    });
    let before = listener.events().len();

    // libvirt migrates the domain, answering pre-switchover itself.
    let t = Instant::now();
    let out = check(
        &pair,
        "virsh migrate",
        source.virsh(&[
            "migrate",
            "--live",
            "--p2p",
            "--verbose",
            "--bandwidth",
            "200",
            DOMAIN,
            destination.uri(),
        ]),
    );
    eprintln!("migrated in {:?}: {}", t.elapsed(), out.trim());
    assert_eq!(
        check(&pair, "domstate", destination.domain_state(DOMAIN)),
        "running"
    );

    // The source relayed each device's migration in QEMU's order: the GPU pre-copies,
    // then both stop-copy when the VM stops and stop when the migration completes.
    listener.wait_for(Duration::from_secs(10), "both devices stopped", |events| {
        ["gpu0", "nic0"].iter().all(|d| {
            states_of(&events[before.min(events.len())..], d)
                .last()
                .map(String::as_str)
                == Some("stop")
        })
    });
    let migration = listener.events().split_off(before);
    eprintln!("relayed VFIO_MIGRATION events: {migration:?}");
    assert_eq!(states_of(&migration, "gpu0"), ["pre-copy", "stop-copy", "stop"]);
    assert_eq!(states_of(&migration, "nic0"), ["stop", "stop-copy", "stop"]);
    // libvirt answered pre-switchover itself, and the model held its migrate-continue
    // while the NIC's 8 MiB (at least) drained at 128 MiB/s: the guest paused that long.
    let job = check(
        &pair,
        "domjobinfo",
        source.virsh(&["domjobinfo", "--completed", DOMAIN]),
    );
    let downtime_ms: u64 = job
        .lines()
        .find_map(|l| l.strip_prefix("Total downtime:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no downtime in {job}"));
    eprintln!("downtime {downtime_ms} ms");
    assert!(
        downtime_ms >= 8 * 1000 / 128,
        "the stop-copy drain is in the pause: {job}"
    );
    let gpu_precopy = migration.iter().position(|e| e.1 == "pre-copy");
    let first_stop = migration.iter().position(|e| e.1 != "pre-copy");
    assert!(
        gpu_precopy < first_stop,
        "pre-copy before the VM stops: {migration:?}"
    );

    // The destination modelled the same devices (libvirt carried the emulator's
    // environment over), and the source's QEMU and proxy are gone.
    assert_eq!(modelled_devices(&pair, destination), expected);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes(source, "--vfio-model-serve").is_empty() || alive(qemu) {
        assert!(
            Instant::now() < deadline,
            "the source's QEMU and proxy outlive the migration"
        );
        std::thread::sleep(Duration::from_millis(25));
    }

    // The guest goes on where it was: no page lost a write.
    let last_on_source = source.heartbeats(DOMAIN).last().copied();
    let after = check(
        &pair,
        "heartbeats on the destination",
        destination.wait_for_heartbeat_after(DOMAIN, 2, Duration::from_secs(10)),
    );
    let beats = destination.heartbeats(DOMAIN);
    assert!(
        !destination.serial(DOMAIN).contains("READY"),
        "it did not boot again"
    );
    assert!(beats.iter().all(|hb| hb.errors == 0), "lost writes: {beats:?}");
    if let Some(last) = last_on_source {
        assert!(after.pages > last.pages, "writes go on: {last:?} then {after:?}");
    }

    // Dropping the pair leaves nothing behind: daemons, QEMU, proxies.
    drop(listener);
    let pids: Vec<u32> = source.pids().into_iter().chain(destination.pids()).collect();
    assert!(
        !processes(destination, "--vfio-model-serve").is_empty(),
        "the destination's proxy runs: {pids:?}"
    );
    let t = Instant::now();
    drop(pair);
    eprintln!("libvirt pair dropped in {:?}", t.elapsed());
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still there after the drop");
    }
}
