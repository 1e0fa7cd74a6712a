//! The QMP client against a real QEMU (`qemu-system-x86_64`, TCG, paused with `-S`).
//! Skipped, with a note on stderr, where QEMU is not installed (but never in CI).

mod support;

use support::{qemu_installed, QEMU};

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backends::qmp::{QmpClient, QmpEndpoint, QmpError};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A QEMU process killed (and waited for: that takes a while here) on drop.
struct Qemu {
    child: Child,
    endpoint: QmpEndpoint,
    _dir: tempfile::TempDir,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a paused (`-S`) PC machine with a QMP monitor on a unix socket, or on
/// TCP when `tcp` is given; `extra` adds arguments such as `-incoming defer`.
fn start_qemu(tcp: Option<SocketAddr>, extra: &[&str]) -> Option<Qemu> {
    if !qemu_installed() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("m.qmp");
    let (endpoint, qmp) = match tcp {
        Some(addr) => (QmpEndpoint::Tcp(addr), format!("tcp:{addr},server=on,wait=off")),
        None => (
            QmpEndpoint::Unix(socket.clone()),
            format!("unix:{},server=on,wait=off", socket.display()),
        ),
    };
    let child = Command::new(QEMU)
        .args(["-M", "pc", "-S", "-accel", "tcg", "-m", "64"])
        .args(["-display", "none", "-nodefaults", "-qmp", &qmp])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start QEMU");
    let qemu = Qemu {
        child,
        endpoint,
        _dir: dir,
    };
    if tcp.is_none() {
        wait_for(&socket);
    }
    Some(qemu)
}

fn wait_for(socket: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "QEMU made no QMP socket");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// Connects, retrying while QEMU has bound its socket but not yet listens on it (a
/// connection is refused in that moment).
async fn connect(qemu: &Qemu, label: &str) -> QmpClient {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match QmpClient::connect(&qemu.endpoint, label, TIMEOUT).await {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("QEMU not listening yet ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to QEMU: {e:?}"),
        }
    }
}

#[tokio::test]
async fn greeting_reports_the_same_version_as_query_version() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let version = client
        .execute(qapi_qmp::query_version {})
        .await
        .expect("query-version");
    let greeted = client.greeting().version;
    assert_eq!(i64::from(greeted.major), version.qemu.major);
    assert_eq!(i64::from(greeted.minor), version.qemu.minor);
    assert_eq!(i64::from(greeted.micro), version.qemu.micro);
    assert_eq!(client.greeting().package, version.package);
    assert!(client.greeting().capabilities.iter().any(|c| c == "oob"));
}

#[tokio::test]
async fn paused_machine_reports_prelaunch_and_no_migration() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status");
    assert!(!status.running);
    assert_eq!(status.status, qapi_qmp::RunState::prelaunch);

    // Before any migration QEMU answers `{}`: no status, no ram statistics.
    let info = client
        .execute(qapi_qmp::query_migrate {})
        .await
        .expect("query-migrate");
    assert!(info.status.is_none(), "{info:?}");
    assert!(info.ram.is_none(), "{info:?}");
    let raw = client
        .execute_raw("query-migrate", None)
        .await
        .expect("raw query-migrate");
    assert_eq!(raw, json!({}));
}

#[tokio::test]
async fn migrate_capabilities_are_listed_and_settable() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let capabilities = client
        .execute(qapi_qmp::query_migrate_capabilities {})
        .await
        .expect("query-migrate-capabilities");
    let events = capabilities
        .iter()
        .find(|c| c.capability == qapi_qmp::MigrationCapability::events)
        .expect("the events capability is listed");
    assert!(!events.state);
    client
        .execute(qapi_qmp::migrate_set_capabilities {
            capabilities: vec![qapi_qmp::MigrationCapabilityStatus {
                capability: qapi_qmp::MigrationCapability::events,
                state: true,
            }],
        })
        .await
        .expect("migrate-set-capabilities");
    let after = client
        .execute(qapi_qmp::query_migrate_capabilities {})
        .await
        .expect("query-migrate-capabilities");
    assert!(after
        .iter()
        .any(|c| c.capability == qapi_qmp::MigrationCapability::events && c.state));
}

#[tokio::test]
async fn typed_migrate_set_parameters_takes_effect() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let parameters = qapi_qmp::MigrateSetParameters {
        downtime_limit: Some(1234),
        max_bandwidth: Some(64 * 1024 * 1024),
        ..Default::default()
    };
    client
        .execute(qapi_qmp::migrate_set_parameters(parameters))
        .await
        .expect("migrate-set-parameters");
    let now = client
        .execute(qapi_qmp::query_migrate_parameters {})
        .await
        .expect("query-migrate-parameters");
    assert_eq!(now.downtime_limit, Some(1234));
    assert_eq!(now.max_bandwidth, Some(64 * 1024 * 1024));
}

#[tokio::test]
async fn rejected_commands_carry_class_and_desc() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let unknown = client
        .execute_raw("no-such-command", None)
        .await
        .expect_err("unknown command");
    assert_eq!(unknown.class(), Some("CommandNotFound"), "{unknown}");
    let QmpError::Command { desc, .. } = &unknown else {
        panic!("expected a command error, got {unknown:?}");
    };
    assert!(desc.contains("no-such-command"), "{desc}");

    let bad_argument = client
        .execute_raw("migrate-set-parameters", Some(json!({"max-bandwidth": "fast"})))
        .await
        .expect_err("bad argument");
    assert_eq!(bad_argument.class(), Some("GenericError"));
    let message = bad_argument.to_string();
    assert!(
        message.starts_with("source (unix:") && message.contains("): migrate-set-parameters: GenericError: "),
        "{message}"
    );
    client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("connection survives errors");
}

#[tokio::test]
async fn cont_and_stop_produce_resume_and_stop_events() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let client = connect(&qemu, "source").await;
    let mut events = client.subscribe();
    let mut next_event = async |name: &str| loop {
        let event = tokio::time::timeout(TIMEOUT, events.recv())
            .await
            .expect("event in time")
            .expect("event");
        if event.name == name {
            return event;
        }
    };

    client.execute(qapi_qmp::cont {}).await.expect("cont");
    let resumed = next_event("RESUME").await;
    assert!(matches!(resumed.typed(), Some(qapi_qmp::Event::RESUME { .. })));

    client.execute(qapi_qmp::stop {}).await.expect("stop");
    let stopped = next_event("STOP").await;
    assert!(matches!(stopped.typed(), Some(qapi_qmp::Event::STOP { .. })));
    assert!(stopped.received >= resumed.received);
    let skew = stopped
        .timestamp
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(60),
        "QEMU's timestamp is wall-clock time"
    );

    let status = client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status");
    assert_eq!(status.status, qapi_qmp::RunState::paused);
}

#[tokio::test]
async fn tcp_monitor_works() {
    let addr = free_port();
    let Some(qemu) = start_qemu(Some(addr), &[]) else {
        return;
    };
    // QEMU opens the port shortly after starting: retry the connection briefly.
    let deadline = Instant::now() + TIMEOUT;
    let client = loop {
        match QmpClient::connect(&qemu.endpoint, "destination", TIMEOUT).await {
            Ok(client) => break client,
            Err(QmpError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("connect over tcp: {e}"),
        }
    };
    assert_eq!(client.peer().to_string(), format!("destination (tcp:{addr})"));
    client
        .execute(qapi_qmp::query_status {})
        .await
        .expect("query-status over tcp");
}

#[tokio::test]
async fn typed_migrate_moves_a_paused_guest_to_a_deferred_destination() {
    let Some(source) = start_qemu(None, &[]) else {
        return;
    };
    let Some(destination) = start_qemu(None, &["-incoming", "defer"]) else {
        return;
    };
    let src = connect(&source, "source").await;
    let dst = connect(&destination, "destination").await;
    let uri = format!("tcp:{}", free_port());
    dst.execute(qapi_qmp::migrate_incoming {
        uri: Some(uri.clone()),
        channels: None,
        exit_on_error: Some(false),
    })
    .await
    .expect("migrate-incoming with exit-on-error");
    let mut events = src.subscribe();
    src.execute(qapi_qmp::migrate_set_capabilities {
        capabilities: vec![qapi_qmp::MigrationCapabilityStatus {
            capability: qapi_qmp::MigrationCapability::events,
            state: true,
        }],
    })
    .await
    .expect("enable migration events");
    src.execute(qapi_qmp::migrate {
        uri: Some(uri),
        channels: None,
        detach: None,
        resume: None,
    })
    .await
    .expect("migrate");

    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = src
            .execute(qapi_qmp::query_migrate {})
            .await
            .expect("query-migrate");
        match info.status {
            Some(qapi_qmp::MigrationStatus::completed) => break info,
            Some(qapi_qmp::MigrationStatus::failed) => panic!("migration failed: {info:?}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "migration did not complete: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ram = info.ram.expect("ram statistics once completed");
    assert!(ram.total > 0);

    // The event may trail the status query by a moment: wait for it.
    let mut statuses = Vec::new();
    while !statuses.contains(&qapi_qmp::MigrationStatus::completed) {
        let event = tokio::time::timeout(TIMEOUT, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no MIGRATION completed event; saw {statuses:?}"))
            .expect("event");
        if let Some(qapi_qmp::Event::MIGRATION { data, .. }) = event.typed() {
            statuses.push(data.status);
        }
    }
    assert_eq!(statuses.first(), Some(&qapi_qmp::MigrationStatus::setup));
    let dst_status = dst
        .execute(qapi_qmp::query_status {})
        .await
        .expect("destination query-status");
    assert!(!dst_status.running, "a -S destination waits for cont");
}

#[tokio::test]
async fn a_second_client_hears_that_another_client_may_hold_the_monitor() {
    let Some(qemu) = start_qemu(None, &[]) else {
        return;
    };
    let first = connect(&qemu, "source").await;
    let started = Instant::now();
    let error = QmpClient::connect(&qemu.endpoint, "source", Duration::from_secs(1))
        .await
        .expect_err("QEMU greets one client at a time");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(error, QmpError::NoGreeting { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(
            ": no greeting within 1s: another client may hold this monitor (QEMU serves one QMP client at a time)"
        ),
        "{message}"
    );
    drop(first);
    let second = connect(&qemu, "source").await;
    second
        .execute(qapi_qmp::query_status {})
        .await
        .expect("once the first client left, the next is served");
}

/// Sends a signal to a process by name (`STOP`, `CONT`, `KILL`) with kill(1).
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

#[tokio::test]
async fn a_stopped_qemu_is_not_answering_and_only_a_dead_one_is_gone() {
    use backends::qemu::QmpDriver;
    use engine::driver::{Driver, RunState, Side};
    use plans::QmpAddress;

    let Some(source) = start_qemu(None, &[]) else {
        return;
    };
    let Some(mut destination) = start_qemu(None, &["-incoming", "defer"]) else {
        return;
    };
    let address = |qemu: &Qemu| match &qemu.endpoint {
        QmpEndpoint::Unix(path) => QmpAddress::Unix(path.clone()),
        QmpEndpoint::Tcp(addr) => panic!("not a unix socket: {addr}"),
    };
    // Both sockets accept once QEMU listens: a first client proves it, then leaves.
    drop(connect(&source, "source").await);
    drop(connect(&destination, "destination").await);
    let mut driver =
        QmpDriver::new(&address(&source), &address(&destination)).with_timeout(Duration::from_secs(1));
    driver.connect().await.expect("connect");
    assert_eq!(driver.run_state(Side::Destination).await, Ok(RunState::InMigrate));

    signal(&destination.child, "STOP");
    let stopped = driver.run_state(Side::Destination).await;
    signal(&destination.child, "CONT");
    assert_eq!(stopped, Ok(RunState::NotAnswering { after_ms: 1000 }));
    assert_eq!(
        driver.run_state(Side::Destination).await,
        Ok(RunState::InMigrate),
        "a stopped QEMU answers again once continued"
    );

    signal(&destination.child, "KILL");
    let _ = destination.child.wait();
    assert_eq!(driver.run_state(Side::Destination).await, Ok(RunState::Gone));
}
