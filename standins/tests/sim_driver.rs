//! The simulated pair through the `Driver` trait alone: statuses, events and their
//! order, and QEMU's refusals, as the QMP backend would report them.

#[path = "sim_support.rs"]
mod support;

use std::time::Duration;

use engine::driver::{
    DeviceEvents, DeviceState, DirtyRateMode, Driver, DriverEvent, KernelDirtyRate, Listen, MigrationStatus,
    RunState, Setup, Side, StreamSetup, SwitchoverHold, Throttle,
};
use standins::sim::{SimDriver, SimVm, MIB};
use standins::vfio::{Fault, ModelDevice};
use support::{device, vm, with_devices};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::sleep;

const URI: &str = "tcp:127.0.0.1:49152";

fn setup(switchover_ack: bool, arm_auto_converge: bool) -> Setup {
    Setup {
        downtime_limit_ms: 300,
        max_bandwidth: Some(128 * MIB),
        arm_auto_converge,
        switchover_ack,
        tls: None,
        stream: StreamSetup::default(),
    }
}

/// Connects, configures, listens and starts; returns the event stream.
async fn started(sim: &mut SimDriver, setup: &Setup) -> UnboundedReceiver<DriverEvent> {
    sim.connect().await.expect("connect");
    let events = sim.take_events();
    sim.configure(setup).await.expect("configure");
    sim.listen(URI).await.expect("listen");
    sim.start(URI).await.expect("migrate");
    events
}

/// Polls until the source's status is `want` (or a minute of simulated time passes).
async fn wait_for(sim: &mut SimDriver, want: MigrationStatus) {
    for _ in 0..6_000 {
        let status = sim.sample().await.expect("sample").status;
        if status == want {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("status never became {want:?}");
}

/// Events received so far, as short names in order.
fn drain(events: &mut UnboundedReceiver<DriverEvent>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(match event {
            DriverEvent::Migration { status, .. } => format!("MIGRATION {status:?}"),
            DriverEvent::DestinationMigration { status, .. } => format!("DESTINATION MIGRATION {status:?}"),
            DriverEvent::Pass { .. } => "PASS".into(),
            DriverEvent::Stop { side, .. } => format!("STOP {side}"),
            DriverEvent::Resume { side, .. } => format!("RESUME {side}"),
            DriverEvent::DeviceState { side, id, state, .. } => format!("{side} {id} {}", state.name()),
            DriverEvent::DeviceDeleted { side, qom_path, .. } => format!("DELETED {side} {qom_path}"),
            DriverEvent::Disconnected { side, .. } => format!("DISCONNECTED {side}"),
        });
    }
    out
}

fn without_passes(events: Vec<String>) -> Vec<String> {
    events.into_iter().filter(|e| e != "PASS").collect()
}

#[tokio::test(start_paused = true)]
async fn events_come_in_qemu_order_through_a_whole_migration() {
    let devices = vec![device("gpu0", true, 4 * MIB), device("vf0", false, MIB)];
    let mut sim = SimDriver::new(with_devices(vm(64, 10), devices));
    let facts = {
        sim.connect().await.expect("connect");
        sim.inspect().await.expect("inspect")
    };
    assert_eq!(facts.source.run_state, RunState::Running);
    assert_eq!(facts.source.migration, MigrationStatus::None);
    assert_eq!(facts.destination.run_state, RunState::InMigrate);
    assert_eq!(facts.source.version, "10.0.2 (sim)");
    assert!(facts.source.dirty_ring_size.is_some());
    let mut events = started(&mut sim, &setup(true, false)).await;
    assert_eq!(
        sim.destination_migration().await.expect("dst"),
        MigrationStatus::Active
    );

    wait_for(&mut sim, MigrationStatus::PreSwitchover).await;
    let before = without_passes(drain(&mut events));
    assert_eq!(
        before,
        [
            "MIGRATION Setup",
            "destination gpu0 resuming",
            "destination vf0 resuming",
            "source gpu0 pre-copy",
            "MIGRATION Active",
            "source gpu0 pre-copy-p2p",
            "source vf0 running-p2p",
            "source gpu0 stop-copy",
            "source vf0 stop",
            "STOP source",
            "MIGRATION PreSwitchover",
        ]
    );
    let err = sim
        .resume(Side::Source)
        .await
        .expect_err("cont while finish-migrate");
    assert_eq!(
        err.message,
        "source (sim): cont: GenericError: Migration is not finalized yet"
    );

    sim.continue_switchover().await.expect("migrate-continue");
    wait_for(&mut sim, MigrationStatus::Completed).await;
    assert_eq!(
        without_passes(drain(&mut events)),
        [
            "MIGRATION Device",
            "source vf0 stop-copy",
            "MIGRATION Completed",
            "source gpu0 stop",
            "source vf0 stop",
        ]
    );
    assert_eq!(
        sim.run_state(Side::Source).await.expect("src"),
        RunState::PostMigrate
    );
    assert_eq!(
        sim.run_state(Side::Destination).await.expect("dst"),
        RunState::Paused {
            reason: "paused".into()
        }
    );
    assert_eq!(
        sim.destination_migration().await.expect("dst"),
        MigrationStatus::Completed
    );
    let done = sim.sample().await.expect("sample");
    assert!(done.downtime_ms.is_some() && done.total_time_ms.is_some());
    assert_eq!(done.remaining_bytes, 0);
    assert_eq!(done.vfio_transferred_bytes, Some(5 * MIB));

    sim.resume(Side::Destination).await.expect("cont");
    assert_eq!(
        drain(&mut events),
        [
            "RESUME destination",
            "destination gpu0 running-p2p",
            "destination vf0 running-p2p",
            "destination gpu0 running",
            "destination vf0 running",
        ]
    );
    let inspector = sim.inspector();
    assert_eq!(inspector.guest_pages_lost(), 0);
    assert_eq!(inspector.run_state(Side::Destination), RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn statistics_follow_what_query_migrate_shows_in_each_status() {
    let mut sim = SimDriver::new(vm(256, 50));
    sim.connect().await.expect("connect");
    let none = sim.sample().await.expect("sample");
    assert_eq!(none.status, MigrationStatus::None);
    assert_eq!(none.total_bytes, 0);
    let _events = {
        let events = sim.take_events();
        sim.configure(&setup(false, true)).await.expect("configure");
        sim.listen(URI).await.expect("listen");
        sim.start(URI).await.expect("migrate");
        events
    };
    let setup_sample = sim.sample().await.expect("sample");
    assert_eq!(setup_sample.status, MigrationStatus::Setup);
    assert_eq!(setup_sample.total_bytes, 0, "no statistics in setup");

    sleep(Duration::from_millis(500)).await;
    let active = sim.sample().await.expect("sample");
    assert_eq!(active.status, MigrationStatus::Active);
    assert_eq!(active.total_bytes, 1024 * MIB);
    assert_eq!(active.page_size, 4096);
    assert_eq!(active.setup_time_ms, Some(5));
    assert_eq!(active.vfio_transferred_bytes, None, "no VFIO devices");
    assert_eq!(active.cpu_throttle_percentage, Some(0), "auto-converge armed");
    // 128 MiB/s through QEMU's mbps and back.
    let mib_per_sec = active.bandwidth as f64 / MIB as f64;
    assert!((127.0..=128.5).contains(&mib_per_sec), "{mib_per_sec}");
    // The bulk pass sends the working set (the start of RAM) at the link's pace; the
    // zero pages after it are all still to send: ~64 MiB sent after half a second.
    let sent = 1024 * MIB - active.remaining_bytes;
    assert!((55 * MIB..70 * MIB).contains(&sent), "{} MiB sent", sent / MIB);
    assert_eq!(active.dirty_sync_count, 1);

    sim.cancel().await.expect("cancel");
    assert_eq!(
        sim.sample().await.expect("sample").status,
        MigrationStatus::Cancelling
    );
    sleep(Duration::from_millis(20)).await;
    let cancelled = sim.sample().await.expect("sample");
    assert_eq!(cancelled.status, MigrationStatus::Cancelled);
    assert_eq!(
        cancelled.total_bytes, 0,
        "QEMU drops the statistics after a cancel"
    );
    assert_eq!(sim.run_state(Side::Source).await.expect("src"), RunState::Running);
    assert_eq!(
        sim.destination_migration().await.expect("dst"),
        MigrationStatus::Failed
    );
    sim.restore().await.expect("restore");
}

#[tokio::test(start_paused = true)]
async fn cancelling_at_pre_switchover_restarts_the_source() {
    let mut sim = SimDriver::new(with_devices(vm(64, 10), vec![device("gpu0", true, MIB)]));
    let mut events = started(&mut sim, &setup(true, false)).await;
    wait_for(&mut sim, MigrationStatus::PreSwitchover).await;
    drain(&mut events);
    sim.cancel().await.expect("cancel");
    wait_for(&mut sim, MigrationStatus::Cancelled).await;
    assert_eq!(
        drain(&mut events),
        [
            "MIGRATION Cancelling",
            "RESUME source",
            "source gpu0 running-p2p",
            "source gpu0 running",
            "MIGRATION Cancelled",
        ]
    );
    assert_eq!(sim.run_state(Side::Source).await.expect("src"), RunState::Running);
    assert!(sim.inspector().paused_total() > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_source_paused_by_stop_completes_by_itself_and_qemu_downtime_excludes_the_pause() {
    let mut sim = SimDriver::new(vm(256, 200));
    let mut events = started(&mut sim, &setup(false, false)).await;
    sleep(Duration::from_secs(3)).await;
    sim.stop_source().await.expect("stop");
    assert!(drain(&mut events).contains(&"STOP source".to_string()));
    wait_for(&mut sim, MigrationStatus::PreSwitchover).await;
    sleep(Duration::from_millis(50)).await;
    sim.continue_switchover().await.expect("continue");
    wait_for(&mut sim, MigrationStatus::Completed).await;
    let done = sim.sample().await.expect("sample");
    let downtime = Duration::from_millis(done.downtime_ms.expect("downtime"));
    let sim_view = sim.inspector();
    assert!(
        sim_view.paused_total() > downtime + Duration::from_millis(500),
        "paused {:?}, QEMU's downtime {downtime:?}",
        sim_view.paused_total()
    );
    assert_eq!(sim_view.guest_pages_lost(), 0);
    assert_eq!(
        drain(&mut events)
            .iter()
            .filter(|e| e.starts_with("STOP"))
            .count(),
        0,
        "no second STOP for a VM already paused"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_after_the_operator_paused_the_source_leaves_it_paused() {
    let mut sim = SimDriver::new(vm(256, 200));
    let _events = started(&mut sim, &setup(false, false)).await;
    sleep(Duration::from_secs(1)).await;
    sim.stop_source().await.expect("stop");
    sim.cancel().await.expect("cancel");
    wait_for(&mut sim, MigrationStatus::Cancelled).await;
    assert_eq!(
        sim.run_state(Side::Source).await.expect("src"),
        RunState::Paused {
            reason: "paused".into()
        }
    );
    sim.resume(Side::Source).await.expect("cont");
    assert_eq!(sim.run_state(Side::Source).await.expect("src"), RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_destination_that_does_not_listen_refuses_the_connection() {
    let mut sim = SimDriver::new(vm(64, 0));
    sim.connect().await.expect("connect");
    sim.start(URI).await.expect("migrate is accepted");
    wait_for(&mut sim, MigrationStatus::Failed).await;
    let failed = sim.sample().await.expect("sample");
    assert_eq!(
        failed.error.as_deref(),
        Some("Failed to connect to '127.0.0.1:49152': Connection refused")
    );
    assert_eq!(sim.run_state(Side::Source).await.expect("src"), RunState::Running);
}

#[tokio::test(start_paused = true)]
async fn qemu_refusals_read_as_the_qmp_backend_reports_them() {
    let mut sim = SimDriver::new(SimVm {
        dirty_ring: false,
        devices: vec![device("nic0", false, MIB)],
        ..vm(64, 10)
    });
    let early = sim.sample().await.expect_err("not connected yet");
    assert!(early.disconnected);
    assert_eq!(
        sim.run_state(Side::Source).await.expect("gone, not an error"),
        RunState::Gone
    );
    sim.connect().await.expect("connect");

    let limit = sim.throttle(&Throttle::DirtyLimit { mib_per_sec: 50 }).await;
    assert_eq!(
        limit.expect_err("no dirty ring").message,
        "source (sim): set-vcpu-dirty-limit: GenericError: dirty page limit feature requires KVM with accelerator property 'dirty-ring-size' set'"
    );
    let ring = sim
        .start_dirty_rate(DirtyRateMode::DirtyRing, Duration::from_secs(1))
        .await;
    assert_eq!(
        ring.expect_err("no dirty ring").message,
        "source (sim): calc-dirty-rate: GenericError: mode dirty-ring is not enabled, use other method instead."
    );
    let devices = sim.vfio_devices().await.expect("qom-list");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].qom_path, "/machine/peripheral/nic0");
    assert_eq!(devices[0].type_name, "vfio-pci");
    let set = sim.enable_migration_events("/machine/peripheral/nic0").await;
    assert_eq!(
        set.expect_err("realized").message,
        "source (sim): qom-set: GenericError: Attempt to set property 'migration-events' on device 'nic0' (type 'vfio-pci') after it was realized"
    );
    let cont = sim.continue_switchover().await;
    assert_eq!(
        cont.expect_err("no migration").message,
        "source (sim): migrate-continue: GenericError: Migration not in expected state: none"
    );
    let big = sim.set_downtime_limit(2_000_001).await;
    assert!(big
        .expect_err("too long")
        .message
        .contains("Parameter 'downtime_limit' expects"));
}

#[tokio::test(start_paused = true)]
async fn dirty_rates_measure_the_guest_and_tcg_reads_zero() {
    let mut sim = SimDriver::new(vm(256, 100));
    sim.connect().await.expect("connect");
    let bitmap = sim
        .start_dirty_rate(DirtyRateMode::DirtyBitmap, Duration::from_secs(1))
        .await;
    assert!(bitmap
        .expect_err("ring on")
        .message
        .contains("mode dirty-bitmap is not enabled"));
    sim.start_dirty_rate(DirtyRateMode::DirtyRing, Duration::from_secs(1))
        .await
        .expect("calc");
    assert!(
        sim.dirty_rate().await.expect("query").is_none(),
        "still measuring"
    );
    sleep(Duration::from_millis(1_100)).await;
    let rate = sim.dirty_rate().await.expect("query").expect("measured");
    assert_eq!(rate.bytes_per_sec, 100 * MIB);
    assert_eq!(rate.per_vcpu, vec![100 * MIB]);

    let mut tcg = SimDriver::new(SimVm {
        kvm: false,
        ..vm(256, 100)
    });
    tcg.connect().await.expect("connect");
    let facts = tcg.inspect().await.expect("inspect");
    assert!(!facts.source.kvm && facts.source.dirty_ring_size.is_none());
    tcg.start_dirty_rate(DirtyRateMode::DirtyBitmap, Duration::from_secs(1))
        .await
        .expect("calc");
    sleep(Duration::from_millis(1_100)).await;
    let rate = tcg.dirty_rate().await.expect("query").expect("measured");
    assert_eq!(rate.bytes_per_sec, 0);
}

#[tokio::test(start_paused = true)]
async fn auto_converge_raises_the_throttle_every_second_busy_sync() {
    let mut sim = SimDriver::new(vm(256, 200));
    sim.connect().await.expect("connect");
    let _events = sim.take_events();
    sim.configure(&setup(false, true)).await.expect("configure");
    let throttle = Throttle::AutoConverge {
        initial: 60,
        increment: 20,
        max: 99,
    };
    sim.throttle(&throttle).await.expect("parameters");
    sim.listen(URI).await.expect("listen");
    sim.start(URI).await.expect("migrate");
    let view = sim.inspector();
    let mut seen = Vec::new();
    for _ in 0..200 {
        sleep(Duration::from_millis(100)).await;
        let pct = view.throttle_percentage();
        if seen.last() != Some(&pct) {
            seen.push(pct);
        }
    }
    assert_eq!(&seen[..3], [0, 60, 80], "{seen:?}");
    assert!(view.guest_dirty_rate() < 200 * MIB / 2);
    assert_eq!(
        sim.sample().await.expect("sample").cpu_throttle_percentage,
        Some(u64::from(view.throttle_percentage()))
    );
}

#[tokio::test(start_paused = true)]
async fn an_unplugged_device_is_reported_and_disappears() {
    let after = Duration::from_millis(300);
    let nic = ModelDevice {
        fault: Fault::UnplugDuringMigration { after },
        ..device("nic0", false, MIB)
    };
    let mut sim = SimDriver::new(with_devices(vm(256, 10), vec![nic]));
    let mut events = started(&mut sim, &setup(false, false)).await;
    sleep(Duration::from_millis(400)).await;
    assert!(drain(&mut events).contains(&"DELETED source /machine/peripheral/nic0".to_string()));
    assert!(sim.vfio_devices().await.expect("qom-list").is_empty());
    assert_eq!(sim.inspector().device_state(Side::Source, "nic0"), None);
    assert_eq!(
        sim.inspector().device_state(Side::Destination, "nic0"),
        None::<DeviceState>
    );
}

#[tokio::test(start_paused = true)]
async fn migration_events_can_be_turned_on_only_where_the_device_allows_it() {
    let silent = ModelDevice {
        migration_events: false,
        allow_runtime_migration_events: true,
        ..device("vf0", false, MIB)
    };
    let mut sim = SimDriver::new(with_devices(vm(64, 10), vec![silent]));
    sim.connect().await.expect("connect");
    assert_eq!(
        sim.vfio_devices().await.expect("qom-list")[0].migration_events,
        Some(false)
    );
    sim.enable_migration_events("/machine/peripheral/vf0")
        .await
        .expect("allowed at runtime");
    assert_eq!(
        sim.vfio_devices().await.expect("qom-list")[0].migration_events,
        Some(true)
    );
    let mut events = sim.take_events();
    sim.stop_source().await.expect("stop");
    assert_eq!(
        drain(&mut events),
        ["source vf0 running-p2p", "source vf0 stop", "STOP source"]
    );
}
