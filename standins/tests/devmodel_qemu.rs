//! The VFIO device model (a QMP proxy) over two real QEMUs migrating over loopback.
//! Skipped, with a note on stderr, where QEMU is not installed (but never in CI).

mod support;

use support::{qemu_installed, QEMU};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backends::qmp::{QmpClient, QmpEndpoint, QmpEvent};
use serde_json::{json, Value};
use standins::devmodel::{Proxy, ProxyConfig, Role};
use standins::vfio::{Fault, ModelDevice};
use tokio::sync::{broadcast, Semaphore};

const TIMEOUT: Duration = Duration::from_secs(10);
const MIB: u64 = 1024 * 1024;
const LINK: u64 = 128 * MIB;

/// At most two QEMU pairs at a time: timings stay meaningful on a small machine.
static SLOTS: Semaphore = Semaphore::const_new(2);

struct Qemu {
    child: Child,
    /// The monitor the proxy takes (QEMU serves one client per QMP socket).
    socket: PathBuf,
    /// A second monitor, for asking QEMU directly.
    direct: PathBuf,
}

/// Two QEMUs, each behind a proxy. Drop kills both before waiting, so they exit together.
struct Rig {
    src: Qemu,
    dst: Qemu,
    src_proxy: Proxy,
    dst_proxy: Proxy,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.src.child.kill();
        let _ = self.dst.child.kill();
        let _ = self.src.child.wait();
        let _ = self.dst.child.wait();
    }
}

/// A paused (`-S`) PC machine without a guest; KVM if it works here, else TCG.
fn spawn_qemu(dir: &Path, name: &str, extra: &[&str]) -> Qemu {
    let socket = dir.join(format!("{name}.qmp"));
    let direct = dir.join(format!("{name}-direct.qmp"));
    let mut command = Command::new(QEMU);
    command
        .args([
            "-M", "pc", "-accel", "kvm", "-accel", "tcg", "-cpu", "qemu64", "-m", "128",
        ])
        .args(["-display", "none", "-nodefaults", "-S"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", direct.display()));
    if Path::new("/usr/share/qemu/qboot.rom").exists() {
        command.args(["-bios", "/usr/share/qemu/qboot.rom"]);
    }
    let child = command
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start QEMU");
    let deadline = Instant::now() + TIMEOUT;
    while !socket.exists() || !direct.exists() {
        assert!(Instant::now() < deadline, "QEMU made no QMP socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    Qemu {
        child,
        socket,
        direct,
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn proxy(qemu: &Qemu, dir: &Path, role: Role, devices: Vec<ModelDevice>) -> Proxy {
    let listen = dir.join(format!("{role:?}-proxy.qmp"));
    Proxy::start(ProxyConfig {
        upstream: qemu.socket.clone(),
        listen,
        role,
        devices,
        link_bytes_per_sec: LINK,
    })
    .await
    .expect("start proxy")
}

/// Both QEMUs with the same modelled devices (as both sides of a real migration have).
async fn rig(devices: Vec<ModelDevice>) -> Option<Rig> {
    if !qemu_installed() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = spawn_qemu(dir.path(), "src", &[]);
    let dst = spawn_qemu(dir.path(), "dst", &["-incoming", "defer"]);
    let src_proxy = proxy(&src, dir.path(), Role::Source, devices.clone()).await;
    let dst_proxy = proxy(&dst, dir.path(), Role::Destination, devices).await;
    Some(Rig {
        src,
        dst,
        src_proxy,
        dst_proxy,
        port: free_port(),
        _dir: dir,
    })
}

async fn connect(path: &Path, label: &str) -> QmpClient {
    QmpClient::connect(&QmpEndpoint::Unix(path.to_owned()), label, TIMEOUT)
        .await
        .expect("connect")
}

/// A client's events, logged as they are waited for.
struct Watch {
    rx: broadcast::Receiver<QmpEvent>,
    log: Vec<QmpEvent>,
}

impl Watch {
    fn new(client: &QmpClient) -> Watch {
        Watch {
            rx: client.subscribe(),
            log: Vec::new(),
        }
    }

    /// Waits for the first event (from now) matching `label`, logging everything read.
    async fn until(&mut self, label: &str, within: Duration) -> QmpEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {label} within {within:?}; saw {:?}", self.labels()))
                .expect("event stream");
            self.log.push(event.clone());
            if describe(&event) == label {
                return event;
            }
        }
    }

    /// Reads whatever arrives within `d`.
    async fn settle(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.log.push(event);
        }
    }

    fn labels(&self) -> Vec<String> {
        self.log.iter().map(describe).collect()
    }

    fn has(&self, label: &str) -> bool {
        self.labels().iter().any(|l| l == label)
    }

    /// Asserts `labels` occur in this order (each after the previous one's occurrence).
    fn assert_order(&self, labels: &[&str]) {
        let seen = self.labels();
        let mut from = 0;
        for label in labels {
            match seen[from..].iter().position(|l| l == label) {
                Some(offset) => from += offset + 1,
                None => panic!("expected order {labels:?}; {label} missing after index {from} in {seen:?}"),
            }
        }
    }
}

/// `MIGRATION:status`, `VFIO:device:state`, `DEVICE_DELETED:device`, or the event's name.
fn describe(event: &QmpEvent) -> String {
    let field = |name: &str| {
        event
            .data
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    match event.name.as_str() {
        "MIGRATION" => format!("MIGRATION:{}", field("status")),
        "VFIO_MIGRATION" => format!("VFIO:{}:{}", field("device-id"), field("device-state")),
        "DEVICE_DELETED" => format!("DEVICE_DELETED:{}", field("device")),
        other => other.to_owned(),
    }
}

/// A migration driven through the proxies, as the tool under test drives one.
struct Session {
    src: QmpClient,
    dst: QmpClient,
    src_events: Watch,
    dst_events: Watch,
}

impl Session {
    /// Connects through both proxies, starts the source VM, enables `events` (if asked)
    /// and `pause-before-switchover`, and caps bandwidth when `bandwidth` is given.
    async fn open(rig: &Rig, events: bool, bandwidth: Option<u64>) -> Session {
        let src = connect(rig.src_proxy.listen_path(), "source").await;
        let dst = connect(rig.dst_proxy.listen_path(), "destination").await;
        let src_events = Watch::new(&src);
        let dst_events = Watch::new(&dst);
        src.execute_raw("cont", None).await.expect("cont");
        for client in [&src, &dst] {
            let capabilities = json!({"capabilities": [
                {"capability": "events", "state": events},
                {"capability": "pause-before-switchover", "state": true},
            ]});
            client
                .execute_raw("migrate-set-capabilities", Some(capabilities))
                .await
                .expect("migrate-set-capabilities");
        }
        if let Some(bytes) = bandwidth {
            src.execute_raw("migrate-set-parameters", Some(json!({"max-bandwidth": bytes})))
                .await
                .expect("migrate-set-parameters");
        }
        Session {
            src,
            dst,
            src_events,
            dst_events,
        }
    }

    async fn start(&self, rig: &Rig) {
        let uri = format!("tcp:127.0.0.1:{}", rig.port);
        self.dst
            .execute_raw(
                "migrate-incoming",
                Some(json!({"uri": uri, "exit-on-error": false})),
            )
            .await
            .expect("migrate-incoming");
        self.src
            .execute_raw("migrate", Some(json!({"uri": uri})))
            .await
            .expect("migrate");
    }

    async fn status(&self) -> Value {
        self.src
            .execute_raw("query-migrate", None)
            .await
            .expect("query-migrate")
    }

    /// Polls the source's `query-migrate` (through the proxy) until `status`.
    async fn wait_status(&self, status: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let info = self.status().await;
            if info["status"] == status {
                return info;
            }
            assert!(Instant::now() < deadline, "no {status}: {info}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn continue_switchover(&self) {
        self.src
            .execute_raw("migrate-continue", Some(json!({"state": "pre-switchover"})))
            .await
            .expect("migrate-continue");
    }

    /// Runs a whole migration with the `events` capability; returns the time from
    /// `pre-switchover` to `completed` as the client saw it (with an immediate continue).
    async fn migrate(&mut self, rig: &Rig) -> Duration {
        self.start(rig).await;
        let paused = self.src_events.until("MIGRATION:pre-switchover", TIMEOUT).await;
        self.continue_switchover().await;
        let completed = self.src_events.until("MIGRATION:completed", TIMEOUT).await;
        self.dst_events.until("MIGRATION:completed", TIMEOUT).await;
        self.dst
            .execute_raw("cont", None)
            .await
            .expect("cont on destination");
        self.dst_events.until("RESUME", TIMEOUT).await;
        self.src_events.settle(Duration::from_millis(100)).await;
        self.dst_events.settle(Duration::from_millis(100)).await;
        completed.received.duration_since(paused.received)
    }
}

fn device(id: &str, precopy: bool, state_size: u64) -> ModelDevice {
    ModelDevice {
        precopy,
        state_size,
        ..ModelDevice::new(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qom_shows_the_devices_and_device_del_removes_one() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let mut toggled = device("toggled", false, 0);
    toggled.allow_runtime_migration_events = true;
    toggled.host = Some("0000:3b:00.1".into());
    let Some(rig) = rig(vec![device("gpu0", true, MIB), toggled]).await else {
        return;
    };
    let client = connect(rig.src_proxy.listen_path(), "source").await;
    let mut events = Watch::new(&client);
    // A second, concurrent client sees the same devices.
    let other = connect(rig.src_proxy.listen_path(), "second").await;

    for c in [&client, &other] {
        let list = c
            .execute_raw("qom-list", Some(json!({"path": "/machine/peripheral"})))
            .await
            .expect("qom-list");
        let list = list.as_array().expect("array");
        assert!(
            list.contains(&json!({"name": "type", "type": "string"})),
            "{list:?}"
        );
        assert!(
            list.contains(&json!({"name": "gpu0", "type": "child<vfio-pci>"})),
            "{list:?}"
        );
        assert!(
            list.contains(&json!({"name": "toggled", "type": "child<vfio-pci>"})),
            "{list:?}"
        );
    }
    let get = |path: &'static str, property: &'static str| {
        let client = client.clone();
        async move {
            client
                .execute_raw("qom-get", Some(json!({"path": path, "property": property})))
                .await
        }
    };
    assert_eq!(
        get("/machine/peripheral/gpu0", "type").await.expect("type"),
        json!("vfio-pci")
    );
    assert_eq!(
        get("/machine/peripheral/gpu0", "migration-events")
            .await
            .expect("events"),
        json!(true)
    );
    assert_eq!(
        get("/machine/peripheral/gpu0", "enable-migration")
            .await
            .expect("em"),
        json!("on")
    );
    assert_eq!(
        get("/machine/peripheral/gpu0", "host").await.expect("host"),
        json!("0000:00:00.0")
    );
    assert_eq!(
        get("/machine/peripheral/toggled", "host").await.expect("host"),
        json!("0000:3b:00.1")
    );
    let missing = get("/machine/peripheral/gpu0", "no-such")
        .await
        .expect_err("unknown property");
    assert!(
        missing
            .to_string()
            .contains("Property 'vfio-pci.no-such' not found"),
        "{missing}"
    );
    // Paths that are not modelled go to QEMU, which answers as it always does.
    let real = get("/machine/peripheral/nothing", "type")
        .await
        .expect_err("not a device");
    assert!(real.to_string().contains("DeviceNotFound"), "{real}");

    let set = |path: &'static str, value: bool| {
        let client = client.clone();
        async move {
            let arguments = json!({"path": path, "property": "migration-events", "value": value});
            client.execute_raw("qom-set", Some(arguments)).await
        }
    };
    let refused = set("/machine/peripheral/gpu0", false)
        .await
        .expect_err("static property");
    assert!(
        refused.to_string().contains(
            "Attempt to set property 'migration-events' on device 'gpu0' (type 'vfio-pci') after it was realized"
        ),
        "{refused}"
    );
    set("/machine/peripheral/toggled", false)
        .await
        .expect("allowed at runtime");
    assert_eq!(
        get("/machine/peripheral/toggled", "migration-events")
            .await
            .expect("events"),
        json!(false)
    );

    // Commands QEMU knows pass through unchanged.
    let status = client
        .execute_raw("query-status", None)
        .await
        .expect("query-status");
    assert_eq!(status["status"], "prelaunch");

    client
        .execute_raw("device_del", Some(json!({"id": "gpu0"})))
        .await
        .expect("device_del");
    let deleted = events.until("DEVICE_DELETED:gpu0", TIMEOUT).await;
    assert_eq!(deleted.data["path"], "/machine/peripheral/gpu0");
    let list = other
        .execute_raw("qom-list", Some(json!({"path": "/machine/peripheral"})))
        .await
        .expect("qom-list");
    assert!(
        !list
            .as_array()
            .expect("array")
            .iter()
            .any(|e| e["name"] == "gpu0"),
        "{list}"
    );
    let gone = get("/machine/peripheral/gpu0", "type")
        .await
        .expect_err("deleted");
    assert!(gone.to_string().contains("DeviceNotFound"), "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_qemu_order_on_both_sides() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let p2p = ModelDevice {
        p2p: true,
        ..device("p2p0", true, 4 * MIB)
    };
    let devices = vec![device("pc0", true, 8 * MIB), device("sc0", false, 8 * MIB), p2p];
    let Some(rig) = rig(devices).await else {
        return;
    };
    let mut session = Session::open(&rig, true, None).await;
    session.migrate(&rig).await;
    let src = &session.src_events;
    eprintln!("source events: {:?}", src.labels());
    eprintln!("destination events: {:?}", session.dst_events.labels());

    // Setup: the pre-copy devices start saving inside `setup`, before `active`.
    src.assert_order(&["MIGRATION:setup", "VFIO:pc0:pre-copy", "MIGRATION:active"]);
    src.assert_order(&["MIGRATION:setup", "VFIO:p2p0:pre-copy", "MIGRATION:active"]);
    // VM stop: device callbacks run before QEMU emits STOP; p2p passes pre-copy-p2p.
    src.assert_order(&[
        "MIGRATION:active",
        "VFIO:pc0:stop-copy",
        "STOP",
        "MIGRATION:pre-switchover",
    ]);
    src.assert_order(&["VFIO:p2p0:pre-copy-p2p", "VFIO:p2p0:stop-copy", "STOP"]);
    src.assert_order(&["MIGRATION:active", "VFIO:sc0:stop", "STOP"]);
    // The stop-copy-only device is saved at `device`, then everything stops after completion.
    src.assert_order(&[
        "MIGRATION:pre-switchover",
        "MIGRATION:device",
        "VFIO:sc0:stop-copy",
        "MIGRATION:completed",
        "VFIO:sc0:stop",
    ]);
    src.assert_order(&["MIGRATION:completed", "VFIO:pc0:stop"]);
    src.assert_order(&["MIGRATION:completed", "VFIO:p2p0:stop"]);
    assert!(!src.has("VFIO:sc0:pre-copy"), "{:?}", src.labels());
    assert_eq!(
        src.labels().iter().filter(|l| *l == "MIGRATION:device").count(),
        1
    );
    let vfio = src
        .log
        .iter()
        .find(|e| e.name == "VFIO_MIGRATION")
        .expect("an event");
    assert_eq!(
        vfio.data["qom-path"]
            .as_str()
            .map(|p| p.starts_with("/machine/peripheral/")),
        Some(true)
    );

    // Destination: loading starts once the stream is active; the VM start runs them.
    let dst = &session.dst_events;
    for id in ["pc0", "sc0"] {
        dst.assert_order(&[
            "MIGRATION:active",
            &format!("VFIO:{id}:resuming"),
            "MIGRATION:completed",
            "RESUME",
            &format!("VFIO:{id}:running"),
        ]);
    }
    dst.assert_order(&["RESUME", "VFIO:p2p0:running-p2p", "VFIO:p2p0:running"]);

    let info = session.status().await;
    assert_eq!(info["status"], "completed");
    assert_eq!(info["vfio"]["transferred"], json!(20 * MIB), "{info}");
    assert!(
        info["ram"].is_object(),
        "QEMU's own statistics pass through: {info}"
    );

    let timeline: Vec<(String, String)> = rig
        .dst_proxy
        .timeline()
        .into_iter()
        .map(|(d, s, _)| (d, s))
        .collect();
    assert!(
        timeline.contains(&("sc0".into(), "resuming".into())),
        "{timeline:?}"
    );
    let src_timeline = rig.src_proxy.timeline();
    assert!(
        src_timeline.windows(2).all(|w| w[0].2 <= w[1].2),
        "timeline in order"
    );
}

/// Runs one migration and returns (pre-switchover → completed, transferred at the end).
async fn switchover_time(devices: Vec<ModelDevice>) -> Option<(Duration, Value)> {
    let rig = rig(devices).await?;
    let mut session = Session::open(&rig, true, None).await;
    let took = session.migrate(&rig).await;
    let info = session.status().await;
    Some((took, info["vfio"]["transferred"].clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_state_lengthens_the_switchover() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let Some((small, _)) = switchover_time(vec![device("sc0", false, 0)]).await else {
        return;
    };
    let (big, transferred) = switchover_time(vec![device("sc0", false, 128 * MIB)])
        .await
        .expect("qemu");
    let slow = ModelDevice {
        fault: Fault::SlowStopCopy(Duration::from_millis(700)),
        ..device("sc0", false, 0)
    };
    let (slowed, _) = switchover_time(vec![slow]).await.expect("qemu");
    eprintln!("pre-switchover -> completed: 0 B {small:?}, 128 MiB @ 128 MiB/s {big:?}, SlowStopCopy(700ms) {slowed:?}");
    assert_eq!(transferred, json!(128 * MIB));
    assert!(small < Duration::from_millis(400), "{small:?}");
    assert!(big >= Duration::from_millis(950), "{big:?}");
    assert!(big < Duration::from_millis(3000), "{big:?}");
    assert!(slowed >= Duration::from_millis(650), "{slowed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_stop_copy_shows_device_status_and_growing_transfer() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let Some(rig) = rig(vec![device("sc0", false, 128 * MIB)]).await else {
        return;
    };
    let mut session = Session::open(&rig, true, None).await;
    session.start(&rig).await;
    session
        .src_events
        .until("MIGRATION:pre-switchover", TIMEOUT)
        .await;
    session.continue_switchover().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = session.status().await;
    assert_eq!(during["status"], "device", "{during}");
    let sent = during["vfio"]["transferred"].as_u64().expect("transferred");
    assert!(sent > 0 && sent < 128 * MIB, "{during}");
    // QEMU would refuse a second continue: it is no longer in pre-switchover.
    let again = session
        .src
        .execute_raw("migrate-continue", Some(json!({"state": "pre-switchover"})))
        .await
        .expect_err("second continue");
    assert!(
        again
            .to_string()
            .contains("Migration not in expected state: device"),
        "{again}"
    );
    session.src_events.until("MIGRATION:completed", TIMEOUT).await;
    let after = session.wait_status("completed").await;
    assert_eq!(after["vfio"]["transferred"], json!(128 * MIB));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_saving_and_slow_devices_reach_precopy_late_or_never() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let never = ModelDevice {
        fault: Fault::NeverSaving,
        ..device("never", true, MIB)
    };
    let slow = ModelDevice {
        fault: Fault::SlowToSaving(Duration::from_millis(300)),
        ..device("slow", true, MIB)
    };
    let Some(rig) = rig(vec![never, slow]).await else {
        return;
    };
    // A capped link keeps QEMU in pre-copy for a while.
    let mut session = Session::open(&rig, true, Some(64 * 1024)).await;
    session.start(&rig).await;
    let setup = session.src_events.until("MIGRATION:setup", TIMEOUT).await;
    let saving = session.src_events.until("VFIO:slow:pre-copy", TIMEOUT).await;
    let late = saving.received.duration_since(setup.received);
    assert!(late >= Duration::from_millis(280), "{late:?}");
    session.src_events.settle(Duration::from_millis(200)).await;
    assert!(
        !session.src_events.has("VFIO:never:pre-copy"),
        "{:?}",
        session.src_events.labels()
    );
    session
        .src
        .execute_raw("migrate_cancel", None)
        .await
        .expect("migrate_cancel");
    session.src_events.until("MIGRATION:cancelled", TIMEOUT).await;
    session.src_events.until("VFIO:slow:running", TIMEOUT).await;
    assert!(!session.src_events.has("VFIO:never:pre-copy"));
    let never_states: Vec<String> = rig
        .src_proxy
        .timeline()
        .into_iter()
        .filter(|(d, _, _)| d == "never")
        .map(|(_, s, _)| s)
        .collect();
    assert!(never_states.is_empty(), "{never_states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_error_in_precopy_fails_the_migration_and_the_source_runs_on() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let broken = ModelDevice {
        fault: Fault::ErrorInPrecopy {
            after: Duration::from_millis(300),
        },
        ..device("bad0", true, 8 * MIB)
    };
    let Some(rig) = rig(vec![broken, device("ok0", false, MIB)]).await else {
        return;
    };
    let mut session = Session::open(&rig, true, Some(64 * 1024)).await;
    session.start(&rig).await;
    session.src_events.until("VFIO:bad0:pre-copy", TIMEOUT).await;
    session.src_events.until("MIGRATION:failed", TIMEOUT).await;
    session.src_events.until("VFIO:bad0:running", TIMEOUT).await;
    session.src_events.settle(Duration::from_millis(200)).await;
    let labels = session.src_events.labels();
    assert!(
        !labels.iter().any(|l| l.starts_with("MIGRATION:cancel")),
        "{labels:?}"
    );
    session
        .src_events
        .assert_order(&["MIGRATION:active", "MIGRATION:failed", "VFIO:bad0:running"]);

    let info = session.status().await;
    assert_eq!(info["status"], "failed", "{info}");
    assert_eq!(
        info["error-desc"], "vfio: error while saving device bad0 state",
        "{info}"
    );
    // QEMU itself, asked directly, cancelled and kept the VM running.
    let direct = connect(&rig.src.direct, "direct").await;
    let status = direct
        .execute_raw("query-status", None)
        .await
        .expect("query-status");
    assert_eq!(status["running"], true, "{status}");
    let real = direct
        .execute_raw("query-migrate", None)
        .await
        .expect("query-migrate");
    assert_eq!(real["status"], "cancelled", "{real}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_during_migration_emits_device_deleted() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let leaving = ModelDevice {
        fault: Fault::UnplugDuringMigration {
            after: Duration::from_millis(200),
        },
        ..device("leaving", true, MIB)
    };
    let Some(rig) = rig(vec![leaving, device("staying", false, MIB)]).await else {
        return;
    };
    let mut session = Session::open(&rig, true, Some(64 * 1024)).await;
    session.start(&rig).await;
    let deleted = session.src_events.until("DEVICE_DELETED:leaving", TIMEOUT).await;
    assert_eq!(deleted.data["path"], "/machine/peripheral/leaving");
    let list = session
        .src
        .execute_raw("qom-list", Some(json!({"path": "/machine/peripheral"})))
        .await
        .expect("qom-list");
    let names: Vec<&Value> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert!(
        !names.contains(&&json!("leaving")) && names.contains(&&json!("staying")),
        "{list}"
    );
    // device_del is refused while migrating, as QEMU refuses it.
    let refused = session
        .src
        .execute_raw("device_del", Some(json!({"id": "staying"})))
        .await
        .expect_err("migrating");
    assert!(
        refused
            .to_string()
            .contains("device_del not allowed while migrating"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_devices_emit_nothing_but_still_move() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let missing = ModelDevice {
        fault: Fault::EventsMissing,
        ..device("missing", true, MIB)
    };
    let off = ModelDevice {
        migration_events: false,
        ..device("off", true, MIB)
    };
    let toggled = ModelDevice {
        allow_runtime_migration_events: true,
        ..device("toggled", false, MIB)
    };
    let Some(rig) = rig(vec![missing, off, toggled, device("loud", true, MIB)]).await else {
        return;
    };
    let mut session = Session::open(&rig, true, None).await;
    let arguments =
        json!({"path": "/machine/peripheral/toggled", "property": "migration-events", "value": false});
    session
        .src
        .execute_raw("qom-set", Some(arguments))
        .await
        .expect("qom-set");
    session.migrate(&rig).await;
    let labels = session.src_events.labels();
    for quiet in ["missing", "off", "toggled"] {
        assert!(
            !labels.iter().any(|l| l.starts_with(&format!("VFIO:{quiet}:"))),
            "{labels:?}"
        );
    }
    assert!(session.src_events.has("VFIO:loud:pre-copy"), "{labels:?}");
    let moved: Vec<(String, String)> = rig
        .src_proxy
        .timeline()
        .into_iter()
        .filter(|(d, _, _)| d == "missing" || d == "off")
        .map(|(d, s, _)| (d, s))
        .collect();
    assert!(
        moved.contains(&("missing".into(), "pre-copy".into())),
        "{moved:?}"
    );
    assert!(moved.contains(&("off".into(), "stop-copy".into())), "{moved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_events_capability_the_proxy_follows_by_polling() {
    let _slot = SLOTS.acquire().await.expect("slot");
    let Some(rig) = rig(vec![device("pc0", true, 2 * MIB)]).await else {
        return;
    };
    let mut session = Session::open(&rig, false, None).await;
    session.start(&rig).await;
    session.src_events.until("VFIO:pc0:pre-copy", TIMEOUT).await;
    session.wait_status("pre-switchover").await;
    session.continue_switchover().await;
    session.wait_status("completed").await;
    session.src_events.until("VFIO:pc0:stop", TIMEOUT).await;
    assert!(!session
        .src_events
        .labels()
        .iter()
        .any(|l| l.starts_with("MIGRATION")));
    session
        .src_events
        .assert_order(&["VFIO:pc0:pre-copy", "VFIO:pc0:stop-copy", "STOP", "VFIO:pc0:stop"]);
    let info = session.status().await;
    assert_eq!(info["vfio"]["transferred"], json!(2 * MIB), "{info}");
    // As a tool would: the destination has completed before it is started.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let dst_status = session
            .dst
            .execute_raw("query-migrate", None)
            .await
            .expect("query-migrate");
        if dst_status["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "{dst_status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let states: Vec<String> = rig.dst_proxy.timeline().into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(states, vec!["resuming".to_owned()]);
    session.dst.execute_raw("cont", None).await.expect("cont");
    session.dst_events.until("VFIO:pc0:running", TIMEOUT).await;
}

/// Reads lines from a raw connection until one is a reply (has `return` or `error`).
async fn raw_reply(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Value {
    loop {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("reply in time")
            .expect("read")
            .expect("open");
        let value: Value = serde_json::from_str(&line).expect("json");
        if value.get("return").is_some() || value.get("error").is_some() {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_clients_get_qemus_answers_and_their_own_ids() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let _slot = SLOTS.acquire().await.expect("slot");
    let Some(rig) = rig(vec![device("gpu0", true, MIB)]).await else {
        return;
    };
    let stream = tokio::net::UnixStream::connect(rig.src_proxy.listen_path())
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting: Value =
        serde_json::from_str(&lines.next_line().await.expect("read").expect("greeting")).expect("json");
    assert_eq!(greeting["QMP"]["capabilities"], json!([]), "{greeting}");
    assert_eq!(greeting["QMP"]["version"]["qemu"]["major"], 10);

    let mut ask = async |text: &str| {
        write
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write");
        raw_reply(&mut lines).await
    };
    let early = ask(r#"{"execute": "query-status", "id": 1}"#).await;
    assert_eq!(early["error"]["class"], "CommandNotFound", "{early}");
    assert_eq!(early["id"], 1);
    let garbage = ask("this is not json").await;
    assert_eq!(garbage["error"]["class"], "GenericError", "{garbage}");
    let array = ask("[1, 2]").await;
    assert_eq!(
        array["error"]["desc"], "QMP input must be a JSON object",
        "{array}"
    );
    let ok = ask(r#"{"execute": "qmp_capabilities", "id": "neg"}"#).await;
    assert_eq!(ok, json!({"return": {}, "id": "neg"}));
    let again = ask(r#"{"execute": "qmp_capabilities", "id": "neg2"}"#).await;
    assert_eq!(again["error"]["class"], "CommandNotFound", "{again}");
    // Forwarded and local replies both carry the client's id exactly.
    let odd = json!({"nested": [1, "two", null]});
    let status = ask(&json!({"execute": "query-status", "id": odd}).to_string()).await;
    assert_eq!(status["id"], odd, "{status}");
    assert_eq!(status["return"]["status"], "prelaunch");
    let local = ask(
        &json!({"execute": "qom-get", "id": 7.5, "arguments": {"path": "gpu0", "property": "type"}})
            .to_string(),
    )
    .await;
    assert_eq!(local, json!({"return": "vfio-pci", "id": 7.5}));
    let no_id = ask(r#"{"execute": "query-status"}"#).await;
    assert!(no_id.get("id").is_none(), "{no_id}");
    let unknown = ask(r#"{"execute": "no-such-command", "id": "x"}"#).await;
    assert_eq!(unknown["error"]["class"], "CommandNotFound", "{unknown}");
    assert_eq!(unknown["id"], "x");
}
