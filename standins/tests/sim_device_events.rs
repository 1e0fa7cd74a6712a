//! Every VFIO device transition the run takes in reaches the event stream (and so
//! `--output ndjson` and the webhooks), not only the report: those of the convergence
//! loop, those taken in while the guest is paused for the switchover and after it, and
//! those after a cancel.

#[path = "sim_support.rs"]
mod support;

use engine::{EngineEvent, Outcome};
use standins::sim::MIB;
use support::{describe, device, device_toml, plan, run, run_with, vm, with_devices, Run};
use tokio::sync::watch;

/// Each device's transitions as the stream carried them: (state, ms since `migrate`).
fn streamed(run: &Run, id: &str) -> Vec<(String, u64)> {
    run.events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Device {
                id: device,
                state,
                at_ms,
            } if device == id => Some((state.clone(), *at_ms)),
            _ => None,
        })
        .collect()
}

/// The same device's timeline as the report has it.
fn reported(run: &Run, id: &str) -> Vec<(String, u64)> {
    let device = run.report.devices.iter().find(|d| d.id == id);
    let device = device.unwrap_or_else(|| panic!("{id} in the report: {}", describe(run)));
    device
        .timeline
        .iter()
        .map(|c| (c.state.clone(), c.at_ms))
        .collect()
}

fn states(transitions: &[(String, u64)]) -> Vec<&str> {
    transitions.iter().map(|(s, _)| s.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn the_switchover_and_completion_transitions_reach_the_stream_as_the_report_has_them() {
    let plan = plan(&format!(
        "{}{}[limits]\nmax_bandwidth = \"128MiB/s\"\n",
        device_toml("gpu0", true, "4MiB"),
        device_toml("vf0", false, "2MiB")
    ));
    let vm = with_devices(
        vm(128, 20),
        vec![device("gpu0", true, 4 * MIB), device("vf0", false, 2 * MIB)],
    );
    let run = run(&plan, vm).await;
    assert_eq!(run.report.result, Outcome::Migrated, "{}", describe(&run));
    for id in ["gpu0", "vf0"] {
        let streamed = streamed(&run, id);
        assert_eq!(streamed, reported(&run, id), "{id}");
        assert!(
            states(&streamed).ends_with(&["stop-copy", "stop"]),
            "{id}: {streamed:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_device_back_to_running_after_an_abort_reaches_the_stream_and_the_report() {
    // The device's state needs more pause than the plan allows: cancelled at
    // pre-switchover, after which QEMU puts the device back to `running`.
    let plan = plan(&format!(
        "{}[limits]\nmax_bandwidth = \"128MiB/s\"\nmax_downtime = \"1s\"\n\
         [policy]\nescalation = [\"force-downtime\", \"abort\"]\n",
        device_toml("gpu0", true, "512MiB")
    ));
    let vm = with_devices(vm(64, 10), vec![device("gpu0", true, 512 * MIB)]);
    let run = run(&plan, vm).await;
    assert_eq!(run.report.result, Outcome::Aborted, "{}", describe(&run));
    let streamed = streamed(&run, "gpu0");
    assert_eq!(streamed, reported(&run, "gpu0"));
    assert_eq!(states(&streamed).last(), Some(&"running"), "{streamed:?}");
    let device = &run.report.devices[0];
    assert_eq!(
        device.state, "running",
        "the report's last state is the last one seen"
    );
    assert_eq!(
        device.timeline.last().map(|c| c.migration_status.as_str()),
        Some("cancelled")
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_run_streams_its_devices_return_to_running() {
    let plan = plan(&format!(
        "{}[limits]\nmax_bandwidth = \"128MiB/s\"\n",
        device_toml("gpu0", true, "4MiB")
    ));
    let vm = with_devices(vm(512, 20), vec![device("gpu0", true, 4 * MIB)]);
    let (tx, rx) = watch::channel(false);
    let interrupt = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let _ = tx.send(true);
    };
    let (run, ()) = tokio::join!(run_with(&plan, vm, rx), interrupt);
    assert_eq!(run.report.rc, 130, "{}", describe(&run));
    let streamed = streamed(&run, "gpu0");
    assert_eq!(states(&streamed), ["pre-copy", "running"]);
    assert_eq!(streamed, reported(&run, "gpu0"));
}
