//! Shared helpers for the simulator tests (included by the other `sim_*` tests with
//! `#[path]`; as a test target of its own it holds no tests).
#![allow(dead_code)]

use engine::events::{EngineEvent, VecSink};
use engine::Report;
use plans::Plan;
use standins::sim::{SimDriver, SimInspector, SimVm, MIB};
use standins::vfio::ModelDevice;
use tokio::sync::watch;

/// The plan's fixed part: names, monitors, the listen address.
const HEAD: &str = r#"
[vm]
name = "sim"

[source]
qmp = "unix:/sim/src.qmp"

[destination]
qmp = "unix:/sim/dst.qmp"
listen = "tcp:127.0.0.1:49152"
"#;

/// A plan from the fixed head and `rest` (more TOML tables).
pub fn plan(rest: &str) -> Plan {
    let text = format!("{HEAD}\n{rest}");
    match plans::load("sim.toml", &text) {
        Ok(plan) => plan,
        Err(e) => panic!("invalid test plan: {e:?}"),
    }
}

/// A `[[devices]]` table.
pub fn device_toml(id: &str, precopy: bool, state: &str) -> String {
    format!("[[devices]]\nid = \"{id}\"\nprecopy = {precopy}\nstate_size = \"{state}\"\n")
}

/// A 1 GiB KVM guest with the dirty ring over a 10 Gbit/s link, writing `wss_mib` of
/// working set at `rate_mib` MiB/s.
pub fn vm(wss_mib: u64, rate_mib: u64) -> SimVm {
    SimVm {
        ram_bytes: 1024 * MIB,
        wss_bytes: wss_mib * MIB,
        dirty_rate: rate_mib * MIB,
        link_bytes_per_sec: 1_250_000_000,
        dirty_ring: true,
        kvm: true,
        devices: Vec::new(),
    }
}

/// A P2P-capable `vfio-pci` device with `migration-events=on` and `state_size` bytes.
pub fn device(id: &str, precopy: bool, state_size: u64) -> ModelDevice {
    ModelDevice {
        precopy,
        p2p: true,
        state_size,
        ..ModelDevice::new(id)
    }
}

/// The same guest with devices.
pub fn with_devices(mut vm: SimVm, devices: Vec<ModelDevice>) -> SimVm {
    vm.devices = devices;
    vm
}

/// What a run left behind.
pub struct Run {
    /// The engine's report.
    pub report: Report,
    /// The simulated hosts as the run left them.
    pub sim: SimInspector,
    /// Everything the engine emitted.
    pub events: Vec<EngineEvent>,
}

/// Migrates `vm` under `plan` with the engine, uninterrupted.
pub async fn run(plan: &Plan, vm: SimVm) -> Run {
    let (_tx, rx) = watch::channel(false);
    run_with(plan, vm, rx).await
}

/// Migrates `vm` under `plan`, with the operator's interrupt channel.
pub async fn run_with(plan: &Plan, vm: SimVm, interrupt: watch::Receiver<bool>) -> Run {
    let mut driver = SimDriver::new(vm);
    let sim = driver.inspector();
    let mut sink = VecSink::default();
    let report = engine::migrate(plan, &mut driver, &mut sink, interrupt.into()).await;
    Run {
        report,
        sim,
        events: sink.0,
    }
}

/// The notes the engine emitted, for failure messages.
pub fn notes(events: &[EngineEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Note { message } => Some(message.clone()),
            EngineEvent::NotReady { problems } => Some(problems.join("; ")),
            _ => None,
        })
        .collect()
}

/// A short description of a report for assertion messages.
pub fn describe(run: &Run) -> String {
    let r = &run.report;
    format!(
        "result {:?} on {:?} rc {} error {:?} passes {} downtime {:?} paused {:?} total {} actions {:?} notes {:?}",
        r.result,
        r.running_on,
        r.rc,
        r.error,
        r.passes,
        r.downtime_ms,
        r.paused_ms,
        r.total_ms,
        r.actions.iter().map(|a| (a.step, a.at, a.pass)).collect::<Vec<_>>(),
        notes(&run.events)
    )
}
