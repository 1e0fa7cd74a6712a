//! The same plans through libvirt: two private libvirt daemons on this machine (the rig's
//! `LibvirtPair`), a domain running the project's dirtying guest, and the
//! `vfio-migrate` binary carrying out a plan whose sides are `libvirt = ...` and
//! `domain = ...`. Each test checks the exit code, the report, and both daemons' view of
//! the domain afterwards (asked with `virsh`, not through the tool).
//!
//! Without libvirt the tests say they are skipped, except under `CI_REQUIRE_LIBVIRT=1`
//! (set by `.ci/run`). They run one at a time, as the QMP ones do: each pair needs a core
//! for the guest's dirtying loop.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{actions, ONE_AT_A_TIME};
use rig::{GuestParams, LibvirtPair, LibvirtPairOptions};
use serde_json::Value;

fn pair(wss_mb: u32, rate_mb: u32) -> Option<LibvirtPair> {
    LibvirtPair::start_or_skip(&LibvirtPairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        ..LibvirtPairOptions::default()
    })
}

/// A plan for the pair: `libvirt` options, limits and policy as given.
fn plan_for(pair: &LibvirtPair, libvirt: &str, limits: &str, policy: &str) -> String {
    format!(
        r#"[vm]
name = "test"
[source]
libvirt = "{src}"
domain = "{domain}"
[destination]
libvirt = "{dst}"
[libvirt]
{libvirt}
[limits]
{limits}
[convergence]
stall_passes = 2
[policy]
{policy}
"#,
        src = pair.source.uri(),
        dst = pair.destination.uri(),
        domain = pair.domain(),
    )
}

fn run(dir: &Path, plan: &str) -> (i32, Value) {
    common::run(dir, plan)
}

/// Starts the tool on `plan` (state under `dir/state`, the JSON report on its stdout)
/// without waiting for it.
fn spawn(dir: &Path, plan: &str) -> std::process::Child {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    std::process::Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--output", "json"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vfio-migrate")
}

/// A QMP command to the source's QEMU through libvirt, by the test (not the tool).
fn ask_source(pair: &LibvirtPair, command: &str) -> Value {
    let out = pair
        .source
        .virsh(&[
            "qemu-monitor-command",
            pair.domain(),
            &format!("{{\"execute\":\"{command}\"}}"),
        ])
        .expect("virsh qemu-monitor-command");
    serde_json::from_str::<Value>(out.trim()).expect("JSON")["return"].clone()
}

/// The source QEMU's migration parameters and capabilities once its migration is
/// active: what libvirt set from the tool's flags and parameters before it started it.
fn settings_while_migrating(pair: &LibvirtPair) -> (Value, Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ask_source(pair, "query-migrate")["status"] != "active" {
        assert!(
            std::time::Instant::now() < deadline,
            "the migration did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        ask_source(pair, "query-migrate-parameters"),
        ask_source(pair, "query-migrate-capabilities"),
    )
}

/// The plan for the pair with modelled devices: `gpu0` with pre-copy, `nic0` as the
/// plan says (it has none).
fn devices_plan(pair: &LibvirtPair, nic0_precopy: bool) -> String {
    format!(
        "{}\n[[devices]]\nid = \"gpu0\"\nprecopy = true\nstate_size = \"64MiB\"\n\n[[devices]]\nid = \"nic0\"\nprecopy = {nic0_precopy}\nstate_size = \"8MiB\"\n",
        plan_for(
            pair,
            "",
            "downtime = \"1s\"\nmax_bandwidth = \"128MiB/s\"",
            "escalation = [\"abort\"]"
        )
    )
}

/// The domain's state as a daemon reports it; `None` when it does not know the domain.
fn state(daemon: &rig::LibvirtDaemon, domain: &str) -> Option<String> {
    daemon.domain_state(domain).ok()
}

/// The guest's next heartbeat on `daemon`, which must report no lost write.
fn assert_guest_alive(daemon: &rig::LibvirtDaemon, domain: &str) {
    let seen = daemon.heartbeats(domain).len();
    let beat = daemon
        .wait_for_heartbeat_after(domain, seen, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no heartbeat on the {}: {e}", daemon.side()));
    assert_eq!(beat.errors, 0, "the guest found lost writes: {beat:?}");
}

#[test]
fn a_converging_workload_migrates_through_libvirt_and_runs_on_the_destination_daemon() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 50) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"",
        "escalation = [\"abort\"]",
    );
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 0, "{}", pair.diagnostics());
    assert_eq!(report["result"], "migrated");
    assert_eq!(report["running_on"], "destination");
    assert_eq!(report["changed"], true);
    assert_eq!(
        report["capabilities"]["switchover_hold"], false,
        "libvirt answers pre-switchover"
    );
    assert!(actions(&report).is_empty(), "no policy action was needed");
    assert!(report["passes"].as_u64().is_some_and(|p| p >= 1), "{report:#}");
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    // `undefine_source` (the default): the source no longer holds a definition that
    // could be started a second time.
    assert_eq!(state(&pair.source, pair.domain()), None);
    assert_guest_alive(&pair.destination, pair.domain());
}

#[test]
fn a_workload_faster_than_the_link_is_aborted_and_stays_on_the_source_daemon() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 200) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "peer_to_peer = true",
        "max_bandwidth = \"64MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    );
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 1, "{}", pair.diagnostics());
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["changed"], false);
    assert_eq!(report["reason"]["abort"]["kind"], "not_converging", "{report:#}");
    assert_eq!(state(&pair.source, pair.domain()).as_deref(), Some("running"));
    assert_eq!(
        state(&pair.destination, pair.domain()),
        None,
        "nothing left on the destination"
    );
    assert_guest_alive(&pair.source, pair.domain());
}

#[test]
fn forcing_raises_the_downtime_limit_through_libvirt_and_completes() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 200) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "max_bandwidth = \"128MiB/s\"\nmax_downtime = \"6s\"\ndeadline = \"120s\"",
        "escalation = [\"force-downtime\", \"abort\"]",
    );
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 0, "{report:#}\n{}", pair.diagnostics());
    assert_eq!(actions(&report), vec!["raise-downtime".to_string()]);
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    assert_guest_alive(&pair.destination, pair.domain());
}

#[test]
fn an_unreachable_destination_daemon_stops_the_run_before_anything_changes() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(64, 0) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(&pair, "", "", "escalation = [\"abort\"]").replace(
        pair.destination.uri(),
        &format!(
            "qemu+unix:///system?socket={}",
            dir.path().join("no-such-sock").display()
        ),
    );
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["changed"], false);
    assert_eq!(report["failed"], true);
    assert_eq!(state(&pair.source, pair.domain()).as_deref(), Some("running"));
    assert_guest_alive(&pair.source, pair.domain());
}

#[test]
fn a_dirty_limit_through_libvirt_makes_a_stalled_workload_converge_and_the_taint_is_reported() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 200) else { return };
    assert!(
        pair.accel.dirty_ring,
        "this test needs KVM with the dirty ring; the rig chose {:?}",
        pair.accel
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"\ndirty_limit = \"30MiB/s\"",
    );
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 0, "{report:#}\n{}", pair.diagnostics());
    let taken = actions(&report);
    assert!(
        !taken.is_empty() && taken.len() <= 2 && taken.iter().all(|a| a == "throttle"),
        "{taken:?}"
    );
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("tainted") && n.contains("set-vcpu-dirty-limit")),
        "the report says which QEMU commands went through libvirt: {notes:?}"
    );
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    assert_guest_alive(&pair.destination, pair.domain());
}

#[test]
fn sigint_through_libvirt_aborts_the_job_and_leaves_the_vm_running_on_the_source() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 200) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    )
    .replace("stall_passes = 2", "stall_passes = 100");
    let child = spawn(dir.path(), &plan);
    std::thread::sleep(Duration::from_secs(3));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report after the interrupt");
    assert_eq!(report["result"], "aborted");
    assert_eq!(report["running_on"], "source");
    assert_eq!(state(&pair.source, pair.domain()).as_deref(), Some("running"));
    assert_eq!(
        state(&pair.destination, pair.domain()),
        None,
        "nothing left on the destination"
    );
    assert_guest_alive(&pair.source, pair.domain());
}

/// Kills the tool with SIGKILL mid-migration; its guardian (or libvirt itself) must leave
/// the VM running on the source and nothing on the destination.
fn killed_mid_migration(peer_to_peer: bool) {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 200) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        &format!("peer_to_peer = {peer_to_peer}"),
        "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
        "escalation = [\"abort\"]",
    )
    .replace("stall_passes = 2", "stall_passes = 100");
    let mut tool = spawn(dir.path(), &plan);
    // Until libvirt reports the job running on the source.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !pair
        .source
        .virsh(&["domjobinfo", pair.domain()])
        .is_ok_and(|info| info.contains("Unbounded"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the migration did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    tool.kill().expect("SIGKILL the tool");
    let _ = tool.wait();
    // The guardian repairs within seconds; ask libvirt, not the tool.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let source = state(&pair.source, pair.domain());
        let destination = state(&pair.destination, pair.domain());
        let job = pair
            .source
            .virsh(&["domjobinfo", pair.domain()])
            .unwrap_or_default();
        if source.as_deref() == Some("running") && destination.is_none() && job.contains("None") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "source {source:?}, destination {destination:?}, job {job}\nguardian: {}\n{}",
            std::fs::read_to_string(dir.path().join("state/guardian.log")).unwrap_or_default(),
            pair.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "guardian: {}",
        std::fs::read_to_string(dir.path().join("state/guardian.log")).unwrap_or_default()
    );
    assert_guest_alive(&pair.source, pair.domain());
}

#[test]
fn killed_during_a_managed_migration_the_vm_runs_on_the_source_and_nowhere_else() {
    killed_mid_migration(false);
}

#[test]
fn killed_during_a_peer_to_peer_migration_the_guardian_aborts_the_job_and_the_vm_runs_on_the_source() {
    killed_mid_migration(true);
}

#[test]
fn a_domain_the_source_daemon_does_not_run_is_refused_before_anything_changes() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(64, 0) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(&pair, "", "", "escalation = [\"abort\"]");

    // No such domain at all.
    let (code, report) = run(dir.path(), &plan.replace(pair.domain(), "no-such-domain"));
    assert_eq!(code, 3, "{report:#}");
    assert_eq!(report["changed"], false);
    assert!(
        report["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-domain"),
        "the answer names the domain: {report:#}"
    );

    // The domain defined but shut off: it runs nowhere, which a person must look at
    // (exit 4), and nothing is changed.
    pair.source
        .virsh(&["destroy", pair.domain()])
        .expect("virsh destroy");
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["changed"], false);
    assert_eq!(report["phase"], "preflight");
    assert_eq!(
        report["source_state"], "gone",
        "no QEMU holds the guest: {report:#}"
    );
    assert_eq!(state(&pair.source, pair.domain()).as_deref(), Some("shut off"));
    assert_eq!(state(&pair.destination, pair.domain()), None);
}

/// A pair whose QEMUs carry the demo's two modelled VFIO devices behind libvirt's
/// monitor: `gpu0` with pre-copy and 64 MiB of state, `nic0` stop-copy only with 8 MiB.
fn pair_with_devices(wss_mb: u32, rate_mb: u32) -> Option<LibvirtPair> {
    use standins::devmodel::emulator::{emulator_script, EmulatorConfig, CONFIG_ENV};
    use standins::vfio::ModelDevice;
    let script =
        emulator_script(&common::model_wrapper(), Path::new("qemu-system-x86_64")).expect("emulator script");
    let config = EmulatorConfig {
        devices: vec![
            ModelDevice {
                precopy: true,
                state_size: 64 << 20,
                ..ModelDevice::new("gpu0")
            },
            ModelDevice {
                state_size: 8 << 20,
                ..ModelDevice::new("nic0")
            },
        ],
        link_bytes_per_sec: 128 << 20,
    };
    LibvirtPair::start_or_skip(&LibvirtPairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        emulator: Some(script),
        emulator_env: vec![(CONFIG_ENV.to_string(), config.to_json())],
        ..LibvirtPairOptions::default()
    })
}

#[test]
fn vfio_devices_through_libvirt_are_followed_until_saving_before_any_decision_and_the_vm_moves() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair_with_devices(256, 50) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = devices_plan(&pair, false);
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 0, "{report:#}\n{}", pair.diagnostics());
    assert_eq!(report["running_on"], "destination");
    assert_eq!(report["capabilities"]["device_events"], true);
    assert_eq!(report["capabilities"]["switchover_hold"], false);
    let gate = report["gate_opened_ms"].as_u64().expect("the gate opened");
    for device in report["devices"].as_array().expect("devices") {
        let saving = device["saving_at_ms"].as_u64().expect("each device was saving");
        assert!(saving <= gate, "{device:#}");
        let states: Vec<&str> = device["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["state"].as_str())
            .collect();
        assert!(
            states.contains(&"stop-copy"),
            "{} went through stop-copy: {states:?}",
            device["id"]
        );
    }
    // Every policy judgement came after the gate opened.
    for pass in report["pass_history"].as_array().into_iter().flatten() {
        let at = pass["elapsed"].as_u64().unwrap_or_default();
        assert!(
            at >= gate,
            "a boundary judged at {at} ms, before the gate opened at {gate} ms"
        );
    }
    let notes = report["notes"].to_string();
    assert!(notes.contains("tainted") && notes.contains("qom-get"), "{notes}");
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    assert_guest_alive(&pair.destination, pair.domain());
}

#[test]
fn a_device_in_the_wrong_state_at_pre_switchover_is_cancelled_and_the_vm_never_runs_on_the_destination() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair_with_devices(256, 50) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    // The plan says nic0 saves in pre-copy; it does not: at pre-switchover it is in
    // `stop`, not `stop-copy`. libvirt continues the switchover itself, so the tool's
    // cancel races it.
    let plan = devices_plan(&pair, true);
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(report["reason"]["kind"], "device", "{report:#}");
    let source = state(&pair.source, pair.domain());
    let destination = state(&pair.destination, pair.domain());
    match code {
        // The cancel won: the VM runs on the source, nothing on the destination.
        1 => {
            eprintln!("race: the cancel won");
            assert_eq!(report["running_on"], "source");
            assert_eq!(source.as_deref(), Some("running"));
            assert_eq!(destination, None);
            assert_guest_alive(&pair.source, pair.domain());
        }
        // libvirt finished first: the destination holds the VM paused, never started.
        4 => {
            eprintln!("race: libvirt finished first");
            assert_eq!(destination.as_deref(), Some("paused"), "{report:#}");
            assert_ne!(source.as_deref(), Some("running"));
        }
        other => panic!("exit {other}: {report:#}"),
    }
}

#[test]
fn stream_choices_reach_qemu_through_libvirt_s_parameters() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 50) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    // XBZRLE with its cache: libvirt's `compression = xbzrle` and its cache size.
    let plan = plan_for(
        &pair,
        "",
        "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"",
        "escalation = [\"abort\"]",
    )
    .replace("[limits]", "[migration]\nxbzrle_cache = \"64MiB\"\n[limits]");
    let (code, report) = run(dir.path(), &plan);
    assert_eq!(code, 0, "{report:#}\n{}", pair.diagnostics());
    assert_eq!(
        report["stream"]["xbzrle"]["cache_size"].as_u64(),
        Some(64 << 20),
        "libvirt's statistics show the cache QEMU used: {report:#}"
    );
    assert_guest_alive(&pair.destination, pair.domain());
}

#[test]
fn multifd_through_libvirt_migrates_over_the_channels_asked_for() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 50) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "downtime = \"300ms\"\nmax_bandwidth = \"64MiB/s\"",
        "escalation = [\"abort\"]",
    )
    .replace(
        "[limits]",
        // Without compression: the guest's pages compress so well that a zstd stream
        // ends before it can be looked at (libvirt's compression parameters are
        // checked in the backend's unit tests).
        "[migration]\nmultifd_channels = 4\n[limits]",
    );
    let tool = spawn(dir.path(), &plan);
    // While libvirt migrates, the source QEMU's settings are what libvirt set from the
    // tool's parameters (asked here through libvirt, by the test, not the tool).
    let (parameters, capabilities) = settings_while_migrating(&pair);
    let out = tool.wait_with_output().expect("wait for vfio-migrate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", pair.diagnostics());
    let multifd = capabilities
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["capability"] == "multifd");
    assert_eq!(
        multifd.map(|c| c["state"].clone()),
        Some(Value::Bool(true)),
        "{capabilities}"
    );
    assert_eq!(parameters["multifd-channels"], 4, "{parameters}");
    assert_eq!(parameters["multifd-compression"], "none", "{parameters}");
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    assert_guest_alive(&pair.destination, pair.domain());
}

fn check(dir: &Path, plan: &str) -> (i32, Value) {
    common::check(dir, plan)
}

#[test]
fn check_through_libvirt_reads_both_daemons_predicts_and_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock();
    let Some(pair) = pair(256, 50) else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"",
        "escalation = [\"abort\"]",
    );
    let before = pair.source.virsh(&["domjobinfo", pair.domain()]).expect("virsh");
    let (code, answer) = check(dir.path(), &plan);
    assert_eq!(code, 0, "{answer:#}");
    let row = |id: &str| {
        common::row(&answer, id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(row("source.reachable"), "pass");
    assert_eq!(row("destination.reachable"), "pass");
    assert_eq!(row("destination.incoming"), "pass");
    assert_eq!(row("vm.machine"), "pass");
    assert_eq!(row("vm.ram"), "pass");
    assert_eq!(row("capability.libvirt"), "pass");
    assert_eq!(row("source.blockers"), "warn", "libvirt cannot list them");
    assert_eq!(
        answer["prediction"]["forecast"]["kind"], "converges",
        "{answer:#}"
    );
    assert_eq!(answer["would_change"], true);
    let measured = answer["measured"]["bytes_per_sec"]
        .as_u64()
        .expect("a kernel dirty rate");
    assert!(
        (30 << 20..80 << 20).contains(&measured),
        "the guest dirties 50 MiB/s: {measured}"
    );
    // Nothing changed, and no QEMU command went through libvirt (it would taint).
    assert_eq!(
        pair.source.virsh(&["domjobinfo", pair.domain()]).expect("virsh"),
        before
    );
    assert_eq!(state(&pair.source, pair.domain()).as_deref(), Some("running"));
    assert_eq!(state(&pair.destination, pair.domain()), None);
    let log_path = pair
        .source
        .host_path(format!("/var/log/libvirt/qemu/{}.log", pair.domain()));
    let log = std::fs::read_to_string(&log_path).expect("the domain's log, where libvirt records a taint");
    assert!(log.contains("-name"), "the log holds QEMU's command line: {log}");
    assert!(
        !log.contains("custom-monitor"),
        "check tainted the domain:\n{log}"
    );
    // The same log does record a taint: a QEMU command through libvirt, now.
    pair.source
        .virsh(&[
            "qemu-monitor-command",
            pair.domain(),
            "{\"execute\":\"query-status\"}",
        ])
        .expect("virsh qemu-monitor-command");
    let log = std::fs::read_to_string(&log_path).expect("the domain's log");
    assert!(
        log.contains("custom-monitor"),
        "libvirt records a taint in this log:\n{log}"
    );
}

#[test]
fn an_encrypted_migration_through_libvirt_uses_the_daemons_certificates() {
    use common::tls::{Ca, Role};
    let _one = ONE_AT_A_TIME.lock();
    // Both daemons' `migrate_tls_x509_cert_dir`: the CA, a server certificate for the
    // name libvirt verifies (this host's, which the destination URI leads to) and a
    // client certificate.
    let pki = tempfile::tempdir().expect("temporary directory");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let ca = Ca::new(pki.path().join("ca"), "vfio-migrate-test-ca");
    let dir = pki.path().join("migrate");
    ca.issue(
        &dir,
        Role::Server,
        &format!("DNS:{},DNS:localhost,IP:127.0.0.1", host.trim()),
    );
    ca.issue(&dir, Role::Client, "DNS:source.test");
    let Some(pair) = LibvirtPair::start_or_skip(&LibvirtPairOptions {
        guest: GuestParams {
            wss_mb: 256,
            rate_mb: 20,
        },
        migrate_tls_dir: Some(dir),
        ..LibvirtPairOptions::default()
    }) else {
        return;
    };
    let work = tempfile::tempdir().expect("temporary directory");
    let plan = plan_for(
        &pair,
        "",
        "downtime = \"300ms\"\nmax_bandwidth = \"128MiB/s\"",
        "escalation = [\"abort\"]",
    )
    .replace("[limits]", "[migration]\ntls = true\n[limits]");
    let tool = spawn(work.path(), &plan);
    let (parameters, _) = settings_while_migrating(&pair);
    let out = tool.wait_with_output().expect("wait for vfio-migrate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", pair.diagnostics());
    assert_ne!(
        parameters["tls-creds"], "",
        "QEMU encrypts the stream: {parameters}"
    );
    assert_eq!(
        state(&pair.destination, pair.domain()).as_deref(),
        Some("running")
    );
    assert_guest_alive(&pair.destination, pair.domain());
}
