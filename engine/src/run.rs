//! The phase script: one linear function that reads top to bottom as the migration goes.
//!
//! ```text
//! connect ─ preflight ─ prepare ─ configure ─ listen ─ migrate ─ converge ─┬─ switchover ─ verify ─▶ migrated
//!    │          │          │                                                └─ recover ────────────▶ aborted / failed
//!    └──────────┴──────────┴──▶ not ready (nothing was changed)
//! ```
//!
//! Two promises hold on every path: the destination is started only after QEMU reports
//! the migration completed, and after a cancel or failure the source is confirmed running
//! (resumed if it was left paused) unless the destination already runs the VM.

use plans::{Plan, Step, ThrottleMethod};
use tokio::time::Instant;

use crate::controls::Controls;
use crate::converge::{Converge, LoopEnd};
use crate::driver::{
    DeviceTransferSetup, Driver, DriverEvent, MigrationStatus, Setup, StreamSetup, TlsSetup,
};
use crate::estimate::{threshold, Context};
use crate::events::{EngineEvent, EventSink};
use crate::gate::DeviceGate;
use crate::outcome::{Ending, Reason};
use crate::phase::{Phase, PhaseClock};
use crate::placement::{Placement, Sides};
use crate::policy;
use crate::preflight::{self, NotReady, Problem, Ready};
use crate::report::Report;
use crate::state::Run;

/// Migrates the plan's VM. Never panics on what the hypervisors say; every path ends in a
/// report that says where the VM runs. `controls` carry the operator's interrupt and,
/// in an evacuation, the run's share of the bandwidth budget (a `watch::Receiver<bool>`
/// converts into controls with the interrupt alone).
pub async fn migrate(
    plan: &Plan,
    driver: &mut dyn Driver,
    sink: &mut dyn EventSink,
    mut controls: Controls,
) -> Report {
    let clock = PhaseClock::new(Phase::Connect);
    sink.emit(EngineEvent::Phase {
        phase: Phase::Connect,
    });
    // Connect, preflight and prepare change nothing that matters: a failure here leaves
    // the VM as it was.
    if let Err(error) = driver.connect().await {
        return Report::not_ready(plan, clock, vec![error.into()], None, sink);
    }
    let mut run = Run::new(plan, driver, sink, clock);
    run.enter(Phase::Preflight);
    let ready = match preflight::check(plan, run.driver).await {
        Ok(ready) => ready,
        Err(not_ready) => return not_ready_report(run, not_ready),
    };
    run.capabilities = Some(ready.capabilities);
    run.sink.emit(EngineEvent::Facts {
        facts: ready.facts.clone(),
    });
    for note in &ready.devices.notes {
        run.note(note.clone());
    }
    if let Err(problems) = prepare_devices(&mut run, &ready).await {
        return not_ready_report(
            run,
            NotReady {
                problems,
                facts: Some(ready.facts),
            },
        );
    }
    if *controls.interrupt.borrow() {
        return finish(run, Ending::Stopped(Reason::Interrupted)).await;
    }
    // From here on the hosts change; every way out goes through `finish` (verify or
    // recover).
    let ending = change(&mut run, &ready, &mut controls).await;
    finish(run, ending).await
}

/// The one change before the migration: turning on `migration-events` for devices that
/// have it off. QEMU refuses it for realized devices in most versions; then the hosts are
/// not ready, and the problem says how to start QEMU instead.
async fn prepare_devices(run: &mut Run<'_>, ready: &Ready) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    for (id, qom_path) in &ready.devices.enable_events {
        let Some(devices) = run.driver.device_events() else {
            break;
        };
        match devices.enable_migration_events(qom_path).await {
            Ok(()) => run.note(format!(
                "turned on migration-events for VFIO device {id} with qom-set"
            )),
            Err(e) => problems.push(Problem::DeviceEventsOff {
                id: id.clone(),
                refusal: e.to_string(),
            }),
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems),
    }
}

/// Configure, listen, migrate, converge, switch over: the phases that change the hosts.
async fn change(run: &mut Run<'_>, ready: &Ready, controls: &mut Controls) -> Ending {
    let plan = run.plan;
    run.enter(Phase::Configure);
    let mut setup = setup_of(plan, ready);
    if let Some(share) = controls.bandwidth.as_mut() {
        setup.max_bandwidth = Some(share.take());
    }
    let configured = run.driver.configure(&setup).await;
    if let (Ok(()), Some(share), Some(cap)) = (&configured, &controls.bandwidth, setup.max_bandwidth) {
        share.put_in_force(cap);
    }
    // Saved even after a partial failure: whatever was changed must be put back.
    if let Some(settings) = run.driver.saved_settings() {
        run.sink.emit(EngineEvent::SettingsSaved { settings });
    }
    if let Err(error) = configured {
        return Ending::Stopped(Reason::Driver { error });
    }
    if let Some(uri) = &plan.destination.listen {
        run.enter(Phase::Listen);
        // Preflight refuses plans that need listening from a backend that cannot.
        if let Some(listener) = run.driver.listener() {
            if let Err(error) = listener.listen(uri).await {
                return Ending::Stopped(Reason::Driver { error });
            }
        }
    }

    run.enter(Phase::Migrate);
    // A share that changed since it was configured is put in force before anything is
    // sent, so a migration never starts on bandwidth another one was given meanwhile.
    if let Err(error) = crate::converge::follow_share(run, controls).await {
        return Ending::Stopped(Reason::Driver { error });
    }
    let started = Instant::now();
    run.seen.started = Some(started);
    run.seen.gate = DeviceGate::new(ready.devices.follow.clone(), started, plan.limits.saving_timeout);
    if let Err(error) = run.driver.start(plan.migration_uri().unwrap_or_default()).await {
        return Ending::Stopped(Reason::Driver { error });
    }

    run.enter(Phase::Converge);
    let end = Converge::new(run, controls, started, &ready.facts.source)
        .until_decided()
        .await;
    match end {
        LoopEnd::PreSwitchover(at) => switchover(run, at).await,
        LoopEnd::Completed => Ending::Completed,
        LoopEnd::Stopped(reason) => Ending::Stopped(reason),
    }
}

/// What the plan asks to be set before `migrate`, for the devices preflight found.
fn setup_of(plan: &Plan, ready: &Ready) -> Setup {
    Setup {
        downtime_limit_ms: plan.limits.downtime.as_millis() as u64,
        max_bandwidth: plan.limits.max_bandwidth.map(|r| r.bytes_per_sec()),
        arm_auto_converge: plan.policy.escalation.contains(&Step::Throttle)
            && plan.policy.throttle == ThrottleMethod::AutoConverge,
        switchover_ack: plan.devices.iter().any(|d| d.precopy),
        tls: plan.migration.tls.then(|| TlsSetup {
            source_dir: plan.migration.tls_dir_source.clone(),
            destination_dir: plan.migration.tls_dir_destination.clone(),
            hostname: plan.migration.tls_hostname.clone(),
        }),
        stream: stream_of(plan, ready),
    }
}

/// The stream's settings: multifd and XBZRLE as the plan has them (off when left out),
/// the rest only where the plan writes them.
fn stream_of(plan: &Plan, ready: &Ready) -> StreamSetup {
    let m = &plan.migration;
    let multifd = m.multifd_channels.is_some();
    StreamSetup {
        multifd_channels: m.multifd_channels,
        multifd_compression: multifd.then_some(m.multifd_compression),
        multifd_compression_level: m.multifd_compression_level.filter(|_| multifd),
        xbzrle_cache_bytes: m.xbzrle_cache.map(|b| b.0),
        zero_page_detection: m.zero_page_detection,
        device_state_transfer: m.device_state_transfer.map(|transfer| DeviceTransferSetup {
            transfer,
            qom_paths: ready.devices.follow.iter().map(|f| f.qom_path.clone()).collect(),
        }),
    }
}

/// QEMU has stopped the VM at `pre-switchover`: every microsecond here is guest downtime.
/// Check the devices and the pause the rest would cause, then continue or refuse.
async fn switchover(run: &mut Run<'_>, at: Instant) -> Ending {
    run.enter(Phase::Switchover);
    // Device events sent before QEMU paused are already queued: take them in. So may be
    // word that a side's connection closed (its QEMU died, say, while this run could not
    // read): continuing into a destination that is gone would only fail the migration
    // after the devices' final state, so cancel here instead.
    let mut lost = None;
    while let Some(event) = run.try_next_event() {
        if let DriverEvent::Disconnected { side, reason } = &event {
            lost.get_or_insert(Reason::ConnectionLost {
                side: *side,
                why: reason.clone(),
            });
        }
        run.record_late(&event, MigrationStatus::PreSwitchover);
    }
    // The kernel may know before any event does: a monitor whose peer hung up while
    // this run could not read (its readiness is polled with the event that brought us
    // here, but the task that would read it may not have run yet).
    if let (None, Some(side)) = (&lost, run.driver.hung_up()) {
        lost = Some(Reason::ConnectionLost {
            side,
            why: "monitor connection closed".into(),
        });
    }
    if let Some(reason) = lost {
        return Ending::Stopped(reason);
    }
    let patience = run.plan.limits.max_downtime * 2;
    if run.driver.switchover_hold().is_none() {
        // The backend continues on its own (libvirt answers `pre-switchover` itself): a
        // device in the wrong state can only be met by cancelling at once, racing the
        // switchover. Whether it lands in time, the recovery finds out by asking both
        // sides; a destination that got the VM anyway stays paused, never started.
        if let Err(violation) = run.seen.gate.check_switchover() {
            run.note(
                "cancelling at pre-switchover, which this backend does not hold: a device is in the wrong state",
            );
            return Ending::Stopped(Reason::Device { violation });
        }
        return crate::verify::wait_for_completion(run, patience).await;
    }
    if let Err(violation) = run.seen.gate.check_switchover() {
        return Ending::Stopped(Reason::Device { violation });
    }
    // The pause is judged without a round trip while the guest waits: on the last
    // sample, with RAM left at most what QEMU's own rule lets through (it stops the
    // guest only once what is left fits its downtime limit at the bandwidth it
    // measures; the last sample may be from mid-pass, and overstate it). A refusal is
    // judged again on a fresh reading, taken while the guest waits, before the
    // migration is cancelled.
    if pause_refused(run, Bound::QemuRule).is_some() {
        if let Ok(sample) = run.driver.sample().await {
            run.seen.last_sample = Some(sample);
        }
        if let Some(abort) = pause_refused(run, Bound::Sample) {
            run.note(format!("cancelling at pre-switchover: {abort}"));
            return Ending::Stopped(Reason::Policy { pass: None, abort });
        }
    }
    let Some(hold) = run.driver.switchover_hold() else {
        return crate::verify::wait_for_completion(run, patience).await;
    };
    // What the guest's pause gains is the time until the command goes out; the reply
    // comes back once QEMU has acted on it, after the pause has moved on.
    let issued = Instant::now();
    match hold.continue_switchover().await {
        Ok(()) => {
            run.seen.switchover_latency = Some(issued.saturating_duration_since(at));
            run.seen.switchover_reply = Some(at.elapsed());
            crate::verify::wait_for_completion(run, patience).await
        }
        Err(error) => Ending::Stopped(Reason::ContinueFailed { error }),
    }
}

/// What the RAM left at `pre-switchover` is taken to be.
#[derive(Clone, Copy)]
enum Bound {
    /// The last sample's, at most QEMU's switchover threshold (bandwidth × the
    /// downtime limit in force).
    QemuRule,
    /// The last sample's, read at `pre-switchover`.
    Sample,
}

/// Why switching over now would pause the guest longer than the plan allows, judged on
/// the last sample (none yet: nothing to refuse on).
fn pause_refused(run: &Run<'_>, bound: Bound) -> Option<policy::AbortReason> {
    let sample = run.seen.last_sample.as_ref()?;
    let ctx = Context::of(run.plan);
    let remaining = match (bound, ctx.bandwidth(sample.bandwidth)) {
        (Bound::QemuRule, Some(bandwidth)) => sample
            .remaining_bytes
            .min(threshold(bandwidth, run.seen.downtime_limit_ms)),
        _ => sample.remaining_bytes,
    };
    // The link carries at least what it carried at its busiest: the last sample of an
    // idle guest shows how little there was to send, not how fast the link goes.
    let link = sample.bandwidth.max(run.seen.peak_bandwidth);
    policy::check_switchover_pause(run.plan, remaining, link, ctx).err()
}

/// The report for hosts that are not ready (nothing was changed), or for a VM that is
/// already where the plan wants it.
fn not_ready_report(run: Run<'_>, not_ready: NotReady) -> Report {
    let capabilities = run.capabilities;
    let sides = not_ready.facts.as_ref().map(Sides::from);
    let already = sides.as_ref().is_some_and(|s| match s.placement() {
        Placement::Migrated => true,
        Placement::CompletedPaused => !run.plan.destination.resume,
        _ => false,
    });
    let mut report = match (already, sides) {
        (true, Some(sides)) => Report::already_migrated(run.plan, run.clock, sides, run.sink),
        (_, sides) => Report::not_ready(run.plan, run.clock, not_ready.problems, sides, run.sink),
    };
    report.capabilities = capabilities;
    report
}

/// Verifies (after completion) or recovers (after anything else), then builds the report.
async fn finish(mut run: Run<'_>, ending: Ending) -> Report {
    let reason = match ending {
        Ending::Completed => {
            run.enter(Phase::Verify);
            None
        }
        Ending::Stopped(reason) => {
            run.enter(Phase::Recover);
            Some(reason)
        }
    };
    let place = match reason {
        None => crate::verify::verify(&mut run).await,
        Some(_) => crate::recover::recover(&mut run).await,
    };
    run.await_resume().await;
    run.take_in_queued();
    for note in &place.notes {
        run.note(note.clone());
    }
    for note in run.driver.footprint() {
        run.note(note);
    }
    let report = Report::of_run(&mut run, reason, place);
    // Drain what is left so late events do not pile up in the channel.
    while run.try_next_event().is_some() {}
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run can be spawned on a multi-threaded runtime beside others (many VMs at once):
    /// this does not compile when the run's future is not `Send`.
    #[test]
    fn a_run_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn check<'a>(
            plan: &'a Plan,
            driver: &'a mut dyn Driver,
            sink: &'a mut dyn EventSink,
            controls: Controls,
        ) {
            assert_send(&migrate(plan, driver, sink, controls));
        }
        let _ = check;
    }
}
