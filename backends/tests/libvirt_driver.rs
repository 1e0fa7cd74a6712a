//! The libvirt driver against two real libvirt daemons (the rig's `LibvirtPair`): what
//! it reads before a run, a migration it starts and the engine would finish, a job it
//! aborts, and what it says of each side afterwards.
//!
//! Without libvirt the tests say they are skipped, except under `CI_REQUIRE_LIBVIRT=1`.

use std::time::Duration;

use backends::libvirt::{LibvirtDriver, LibvirtTarget};
use engine::driver::{Driver, DriverEvent, MigrationStatus, RunState, Setup, Side};
use rig::{GuestParams, LibvirtPair, LibvirtPairOptions};
use tokio::sync::mpsc::UnboundedReceiver;

fn pair(wss_mb: u32, rate_mb: u32) -> Option<LibvirtPair> {
    LibvirtPair::start_or_skip(&LibvirtPairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        ..LibvirtPairOptions::default()
    })
}

fn driver(pair: &LibvirtPair, peer_to_peer: bool) -> LibvirtDriver {
    LibvirtDriver::new(LibvirtTarget {
        source_uri: pair.source.uri().to_string(),
        domain: pair.domain().to_string(),
        destination_uri: pair.destination.uri().to_string(),
        destination_name: None,
        peer_to_peer,
        persist: true,
        undefine_source: true,
        devices: Vec::new(),
        device_moves: Vec::new(),
        mdev_moves: Vec::new(),
    })
}

fn setup(bandwidth_mib: u64) -> Setup {
    Setup {
        downtime_limit_ms: 300,
        max_bandwidth: Some(bandwidth_mib << 20),
        arm_auto_converge: false,
        switchover_ack: false,
        tls: None,
        stream: Default::default(),
    }
}

/// Waits for the destination's end of the migration (the driver reports it when
/// libvirt's call returns), collecting the source's statuses on the way.
async fn until_destination_ends(
    events: &mut UnboundedReceiver<DriverEvent>,
) -> (MigrationStatus, Vec<MigrationStatus>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the migration ended within 60 s")
            .expect("events keep coming");
        match event {
            DriverEvent::Migration { status, .. } => seen.push(status),
            DriverEvent::DestinationMigration { status, .. } => return (status, seen),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_migration_hands_the_domain_over_paused_until_the_destination_is_resumed() {
    let Some(pair) = pair(64, 20) else { return };
    let mut driver = driver(&pair, false);
    driver.connect().await.expect("connect to both daemons");
    let mut events = driver.take_events();

    let facts = driver.inspect().await.expect("inspect");
    assert_eq!(facts.source.run_state, RunState::Running);
    assert!(
        facts.source.version.starts_with("10."),
        "QEMU's version: {}",
        facts.source.version
    );
    assert_eq!(
        facts.destination.run_state,
        RunState::InMigrate,
        "no domain there yet"
    );
    assert_eq!(facts.destination.migration, MigrationStatus::Setup);
    assert_eq!(facts.source.ram_bytes, Some(1024 << 20));
    assert_eq!(facts.source.kvm, pair.accel.kind == "kvm");
    assert_eq!(facts.source.dirty_ring_size.is_some(), pair.accel.dirty_ring);

    driver.configure(&setup(200)).await.expect("configure");
    driver.start("").await.expect("start");
    let (end, statuses) = until_destination_ends(&mut events).await;
    assert_eq!(end, MigrationStatus::Completed, "{}", pair.diagnostics());
    assert!(
        statuses.contains(&MigrationStatus::Active),
        "QEMU's own statuses arrive: {statuses:?}"
    );
    assert!(statuses.contains(&MigrationStatus::Completed), "{statuses:?}");

    let sample = driver.sample().await.expect("final statistics");
    assert_eq!(sample.status, MigrationStatus::Completed);
    assert!(sample.transferred_bytes > 64 << 20, "{sample:?}");
    assert!(sample.downtime_ms.is_some(), "{sample:?}");

    // VIR_MIGRATE_PAUSED: the destination waits for the tool.
    assert!(matches!(
        driver.run_state(Side::Destination).await,
        Ok(RunState::Paused { .. })
    ));
    assert_eq!(
        driver.destination_migration().await,
        Ok(MigrationStatus::Completed)
    );
    assert_eq!(driver.run_state(Side::Source).await, Ok(RunState::PostMigrate));
    driver
        .resume(Side::Destination)
        .await
        .expect("resume the destination");
    assert_eq!(driver.run_state(Side::Destination).await, Ok(RunState::Running));
    driver.restore().await.expect("restore");

    assert_eq!(
        pair.destination.domain_state(pair.domain()).expect("virsh"),
        "running"
    );
    // undefine_source: the source no longer knows the domain.
    assert!(
        pair.source.domain_state(pair.domain()).is_err(),
        "the source's definition is gone"
    );
    let seen = pair.destination.heartbeats(pair.domain()).len();
    let after = pair
        .destination
        .wait_for_heartbeat_after(pair.domain(), seen, Duration::from_secs(5))
        .expect("the guest runs on the destination");
    assert_eq!(after.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_job_leaves_the_guest_running_on_the_source_and_nothing_on_the_destination() {
    let Some(pair) = pair(256, 200) else { return };
    let mut driver = driver(&pair, true);
    driver.connect().await.expect("connect to both daemons");
    let mut events = driver.take_events();
    driver.configure(&setup(64)).await.expect("configure");
    driver.start("").await.expect("start");
    // Let it copy for a while, as a policy would before it gives up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = driver.sample().await.expect("statistics while running");
    assert_eq!(running.status, MigrationStatus::Active, "{running:?}");
    assert!(running.total_bytes >= 1024 << 20, "{running:?}");
    driver.cancel().await.expect("abort the job");
    let (end, _) = until_destination_ends(&mut events).await;
    assert_eq!(end, MigrationStatus::Failed);
    assert_eq!(driver.run_state(Side::Source).await, Ok(RunState::Running));
    assert_eq!(driver.run_state(Side::Destination).await, Ok(RunState::InMigrate));
    driver.restore().await.expect("restore");
    // Cancelling again is harmless.
    driver.cancel().await.expect("no job left to abort");

    assert_eq!(pair.source.domain_state(pair.domain()).expect("virsh"), "running");
    assert!(
        pair.destination.domain_state(pair.domain()).is_err(),
        "nothing on the destination"
    );
    let seen = pair.source.heartbeats(pair.domain()).len();
    let hb = pair
        .source
        .wait_for_heartbeat_after(pair.domain(), seen, Duration::from_secs(5))
        .expect("the guest still runs on the source");
    assert_eq!(hb.errors, 0);
}

/// PCI devices of this host, with the driver each is bound to (`None`: no driver).
fn host_pci_devices() -> Vec<(String, Option<String>)> {
    let mut devices: Vec<(String, Option<String>)> = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|dir| {
            dir.flatten()
                .map(|entry| {
                    let driver = std::fs::read_link(entry.path().join("driver"))
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                    (entry.file_name().to_string_lossy().into_owned(), driver)
                })
                .collect()
        })
        .unwrap_or_default();
    devices.sort();
    devices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_moved_to_other_destination_devices_are_checked_there_before_anything_changes() {
    let Some(pair) = pair(64, 0) else { return };
    let devices = host_pci_devices();
    // A device bound to a driver (every VM of this kind has virtio-pci ones), and one
    // bound to another driver or to none.
    let Some((bound, bound_driver)) = devices.iter().find_map(|(a, d)| Some((a.clone(), d.clone()?))) else {
        panic!("this host has no PCI device bound to a driver: {devices:?}");
    };
    let other = devices
        .iter()
        .find(|(_, d)| d.as_deref() != Some(bound_driver.as_str()))
        .cloned();
    let second = devices
        .iter()
        .map(|(a, _)| a.clone())
        .find(|a| *a != bound)
        .expect("a second PCI device");
    // A domain defined (not started) on the source, passing both through: libvirt keeps
    // user aliases (`ua-`) in the inactive XML.
    let hostdev = |address: &str, alias: &str| {
        let p = backends::libvirt::hostdev::PciAddress::parse(address).expect("sysfs address");
        format!(
            "<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x{:04x}' \
             bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/></source><alias name='{alias}'/></hostdev>",
            p.domain, p.bus, p.slot, p.function
        )
    };
    let xml = format!(
        "<domain type='qemu'><name>spare</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>\
         <devices>{}{}</devices></domain>",
        hostdev(&bound, "ua-gpu0"),
        hostdev(&second, "ua-nic0")
    );
    let file = pair.source.tree().join("spare.xml");
    std::fs::write(&file, xml).expect("write the domain XML");
    pair.source
        .virsh(&["define", &file.to_string_lossy()])
        .expect("define the spare domain");

    let mut moves = vec![
        ("ua-nic0".to_string(), "0000:7f:1f.7".to_string()),
        ("hostdev9".to_string(), bound.clone()),
    ];
    if let Some((other, _)) = &other {
        moves.push(("ua-gpu0".to_string(), other.clone()));
    }
    let mut driver = LibvirtDriver::new(LibvirtTarget {
        source_uri: pair.source.uri().to_string(),
        domain: "spare".into(),
        destination_uri: pair.destination.uri().to_string(),
        destination_name: None,
        peer_to_peer: false,
        persist: true,
        undefine_source: true,
        devices: Vec::new(),
        device_moves: moves,
        mdev_moves: Vec::new(),
    });
    driver.connect().await.expect("connect to both daemons");
    let facts = driver.inspect().await.expect("inspect");
    let mut expected = vec![
        "device ua-nic0: the destination host has no PCI device 0000:7f:1f.7".to_string(),
        format!("device hostdev9: the source domain has no PCI <hostdev> with that alias to move to {bound}"),
    ];
    if let Some((other, other_driver)) = &other {
        expected.push(format!(
            "device ua-gpu0: {other} is bound to {} on the destination, {bound} to {bound_driver} on the source",
            other_driver.as_deref().unwrap_or("no driver")
        ));
    } else {
        eprintln!("every PCI device here is bound to {bound_driver}: the driver mismatch is not tried");
    }
    assert_eq!(facts.destination.blocked_reasons, expected);
    assert!(facts.source.blocked_reasons.is_empty());
}
