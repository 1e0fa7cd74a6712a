//! After a completed migration, `restore` puts back every capability and parameter
//! `configure` changed, on both sides: the source QEMU may live on (postmigrate), and
//! the destination runs the guest; neither should keep `pause-before-switchover`,
//! `events`, the lowered `max-bandwidth` or the switchover-ack pair the tool set.
//! Against a real QEMU pair from the rig (skipped where QEMU is missing, never in CI).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use backends::qemu::QmpDriver;
use backends::qmp::{QmpClient, QmpEndpoint};
use engine::driver::{Driver, MigrationStatus, Setup, StreamSetup};
use plans::{MultifdCompression, QmpAddress, ZeroPageDetection};
use rig::{Accel, GuestParams, PairOptions, QemuPair};
use serde_json::Value;

/// Both migration settings of one QEMU, as QMP lists them.
#[derive(Debug, PartialEq)]
struct Settings {
    capabilities: Value,
    parameters: Value,
}

/// Reads a QEMU's settings over a connection of its own (QEMU serves one QMP client at
/// a time, so this runs only while the driver is not connected).
async fn settings(socket: &Path) -> Settings {
    let endpoint = QmpEndpoint::Unix(socket.to_path_buf());
    let client = QmpClient::connect(&endpoint, "reader", Duration::from_secs(10))
        .await
        .expect("connect to read settings");
    let read = async |command: &str| {
        client
            .execute_raw(command, None)
            .await
            .unwrap_or_else(|e| panic!("{command}: {e}"))
    };
    Settings {
        capabilities: read("query-migrate-capabilities").await,
        parameters: read("query-migrate-parameters").await,
    }
}

/// What a plan with a bandwidth cap, auto-converge and precopy devices sets up: every
/// capability and parameter the driver changes.
fn everything() -> Setup {
    Setup {
        downtime_limit_ms: 500,
        max_bandwidth: Some(64 * 1024 * 1024),
        arm_auto_converge: true,
        switchover_ack: true,
        tls: None,
        stream: StreamSetup::default(),
    }
}

/// Polls the source until its migration reaches `until`, continuing at pre-switchover.
async fn migrate_to_completion(driver: &mut QmpDriver) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sample = driver.sample().await.expect("query-migrate");
        match sample.status {
            MigrationStatus::Completed => return,
            MigrationStatus::PreSwitchover => driver
                .switchover_hold()
                .expect("the QMP driver holds the switchover")
                .continue_switchover()
                .await
                .expect("migrate-continue"),
            MigrationStatus::Failed | MigrationStatus::Cancelled => {
                panic!("migration ended {}: {:?}", sample.status, sample.error)
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "no completion: {sample:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn restore_after_a_completed_migration_leaves_both_sides_as_they_were() {
    if !support::qemu_installed() {
        return;
    }
    let pair = QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: 16,
            rate_mb: 0,
        },
        mem_mb: 64,
        accel: Accel::Auto,
        dirty_ring: false,
        ..PairOptions::default()
    })
    .expect("start the QEMU pair");
    let (source, destination) = (&pair.source.qmp_socket, &pair.destination.qmp_socket);
    let before = (settings(source).await, settings(destination).await);

    let mut driver = QmpDriver::new(
        &QmpAddress::Unix(source.clone()),
        &QmpAddress::Unix(destination.clone()),
    );
    driver.connect().await.expect("connect");
    driver.configure(&everything()).await.expect("configure");
    let uri = format!("tcp:127.0.0.1:{}", pair.migration_port);
    driver
        .listener()
        .expect("the QMP driver listens")
        .listen(&uri)
        .await
        .expect("migrate-incoming");
    driver.start(&uri).await.expect("migrate");
    migrate_to_completion(&mut driver).await;

    driver
        .restore()
        .await
        .expect("QEMU accepts every setting back in postmigrate");
    drop(driver);

    let after = (settings(source).await, settings(destination).await);
    assert_eq!(after.0, before.0, "the source's settings");
    assert_eq!(after.1, before.1, "the destination's settings");
}

#[tokio::test]
async fn configure_changes_what_restore_puts_back() {
    // The other half of the specification above: without restore, the completed
    // migration leaves the tool's settings behind on the source.
    if !support::qemu_installed() {
        return;
    }
    let pair = QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: 16,
            rate_mb: 0,
        },
        mem_mb: 64,
        accel: Accel::Auto,
        dirty_ring: false,
        ..PairOptions::default()
    })
    .expect("start the QEMU pair");
    let source = &pair.source.qmp_socket;
    let before = settings(source).await;
    let mut driver = QmpDriver::new(
        &QmpAddress::Unix(source.clone()),
        &QmpAddress::Unix(pair.destination.qmp_socket.clone()),
    );
    driver.connect().await.expect("connect");
    driver.configure(&everything()).await.expect("configure");
    drop(driver);
    let after = settings(source).await;
    let on = |s: &Settings, name: &str| {
        s.capabilities
            .as_array()
            .and_then(|a| a.iter().find(|c| c["capability"] == name))
            .and_then(|c| c["state"].as_bool())
    };
    for capability in [
        "events",
        "pause-before-switchover",
        "auto-converge",
        "return-path",
        "switchover-ack",
    ] {
        assert_eq!(on(&before, capability), Some(false), "{capability} before");
        assert_eq!(on(&after, capability), Some(true), "{capability} after configure");
    }
    assert_eq!(after.parameters["max-bandwidth"], 64 * 1024 * 1024);
    assert_ne!(after.parameters, before.parameters);
}

/// A multifd stream compressed with zstd, zero pages found in the main thread.
fn multifd_zstd() -> Setup {
    Setup {
        stream: StreamSetup {
            multifd_channels: Some(4),
            multifd_compression: Some(MultifdCompression::Zstd),
            multifd_compression_level: Some(3),
            zero_page_detection: Some(ZeroPageDetection::Legacy),
            ..StreamSetup::default()
        },
        ..everything()
    }
}

#[tokio::test]
async fn a_multifd_stream_is_set_on_both_sides_before_listening_and_put_back_after() {
    if !support::qemu_installed() {
        return;
    }
    let pair = QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: 16,
            rate_mb: 0,
        },
        mem_mb: 64,
        accel: Accel::Auto,
        dirty_ring: false,
        ..PairOptions::default()
    })
    .expect("start the QEMU pair");
    let (source, destination) = (&pair.source.qmp_socket, &pair.destination.qmp_socket);
    let before = (settings(source).await, settings(destination).await);

    let mut driver = QmpDriver::new(
        &QmpAddress::Unix(source.clone()),
        &QmpAddress::Unix(destination.clone()),
    );
    driver.connect().await.expect("connect");
    driver.configure(&multifd_zstd()).await.expect("configure");
    // Read over the second monitor while the driver holds the first.
    let during = (
        settings(&pair.source.observer_socket).await,
        settings(&pair.destination.observer_socket).await,
    );
    for (side, s) in [("source", &during.0), ("destination", &during.1)] {
        assert_eq!(on(s, "multifd"), Some(true), "{side}: multifd");
        assert_eq!(s.parameters["multifd-channels"], 4, "{side}");
        assert_eq!(s.parameters["multifd-compression"], "zstd", "{side}");
    }
    assert_eq!(during.0.parameters["multifd-zstd-level"], 3);
    assert_eq!(during.0.parameters["zero-page-detection"], "legacy");

    let uri = format!("tcp:127.0.0.1:{}", pair.migration_port);
    driver
        .listener()
        .expect("the QMP driver listens")
        .listen(&uri)
        .await
        .expect("migrate-incoming");
    driver.start(&uri).await.expect("migrate");
    migrate_to_completion(&mut driver).await;
    driver.restore().await.expect("QEMU accepts every setting back");
    drop(driver);

    let after = (settings(source).await, settings(destination).await);
    assert_eq!(after.0, before.0, "the source's settings");
    assert_eq!(after.1, before.1, "the destination's settings");
}

/// A capability's state in a settings reading.
fn on(s: &Settings, name: &str) -> Option<bool> {
    s.capabilities
        .as_array()
        .and_then(|a| a.iter().find(|c| c["capability"] == name))
        .and_then(|c| c["state"].as_bool())
}
