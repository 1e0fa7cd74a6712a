//! After QEMU reports the migration completed: wait for it, start the destination if it
//! waits paused (never before completion), put back the settings the run changed (and
//! remove the TLS credentials it added), and confirm the source handed over.

use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{DriverEvent, MigrationStatus, RunState, Side};
use crate::outcome::{Ending, Reason};
use crate::recover::state_of;
use crate::report::RunningOn;
use crate::state::{Run, SETTLE};

/// How often a destination still loading is asked whether it has finished.
const DESTINATION_POLL: Duration = Duration::from_millis(1);

/// What an operator must be told when both sides run the guest.
pub(crate) const BOTH_RUNNING: &str =
    "BOTH sides report running: stop one by hand after checking which has the newer state";

/// Where the VM is at the end of a run, as both sides said.
#[derive(Debug)]
pub(crate) struct Where {
    pub(crate) running_on: RunningOn,
    pub(crate) source: RunState,
    pub(crate) destination: RunState,
    pub(crate) notes: Vec<String>,
}

/// What the run's end came after, which decides how both sides' states are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// QEMU reported completion; `resume` is the plan's `destination.resume`.
    Completion { resume: bool },
    /// A cancel, failure or interrupt.
    Recovery,
}

impl Where {
    /// Where the VM runs, judged from both sides' run states. After a completion only
    /// the destination can be confirmed (a running source is not a handed-over one);
    /// after a recovery, whichever side alone runs it.
    pub(crate) fn judge(
        source: RunState,
        destination: RunState,
        after: After,
        mut notes: Vec<String>,
    ) -> Self {
        use RunState::{Paused, PostMigrate, Running};
        let running_on = match (&source, &destination, after) {
            (Running, Running, _) => {
                notes.push(BOTH_RUNNING.into());
                RunningOn::Unknown
            }
            (_, Running, _) => RunningOn::Destination,
            (Running, _, After::Recovery) => RunningOn::Source,
            (PostMigrate, Paused { .. }, After::Completion { resume: false }) => {
                notes.push(
                    "the destination holds the VM paused, as the plan asked (destination.resume = false)"
                        .into(),
                );
                RunningOn::Destination
            }
            _ => RunningOn::Unknown,
        };
        Where {
            running_on,
            source,
            destination,
            notes,
        }
    }
}

/// After `migrate-continue`: waits until QEMU says completed or failed.
pub(crate) async fn wait_for_completion(run: &mut Run<'_>, patience: Duration) -> Ending {
    // The device stage lasts as long as the downtime the plan allows, at most.
    let deadline = Instant::now() + SETTLE.max(patience);
    loop {
        // Events first: the status change usually arrives before a poll would see it.
        while let Some(event) = run.try_next_event() {
            if completes(run, &event) {
                return Ending::Completed;
            }
        }
        if Instant::now() >= deadline {
            return Ending::Stopped(Reason::SwitchoverTimedOut);
        }
        // Wait for the event before asking: a query right behind `migrate-continue`
        // holds QEMU's main lock while its migration thread needs it to go on, which
        // adds to the guest's pause.
        tokio::select! {
            event = run.next_event() => if let Some(event) = event {
                if completes(run, &event) {
                    return Ending::Completed;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        match run.driver.sample().await {
            Ok(s) => {
                let status = s.status.clone();
                let qemu_error = s.error.clone();
                run.seen.last_sample = Some(s);
                match status {
                    MigrationStatus::Completed => return Ending::Completed,
                    MigrationStatus::Failed | MigrationStatus::Cancelled => {
                        return Ending::Stopped(Reason::MigrationFailed {
                            during_switchover: true,
                            qemu_error,
                        })
                    }
                    _ => {}
                }
            }
            Err(error) if error.disconnected => return Ending::Stopped(Reason::failed_request(error)),
            Err(_) => {}
        }
    }
}

/// Records an event that arrives during the device stage; whether it says completed.
fn completes(run: &mut Run<'_>, event: &DriverEvent) -> bool {
    run.record_late(event, MigrationStatus::Device);
    matches!(
        event,
        DriverEvent::Migration {
            status: MigrationStatus::Completed,
            ..
        }
    )
}

/// Reads the source's final statistics (downtime, total time): they no longer change
/// once QEMU reports completion, so they are read after the destination has started,
/// not during the guest's pause.
async fn read_final_stats(run: &mut Run<'_>) {
    if let Ok(s) = run.driver.sample().await {
        run.seen.last_sample = Some(s);
    }
}

/// After completion: start the destination if it waits paused (never before completion),
/// put back what the run changed, and confirm the source handed over.
pub(crate) async fn verify(run: &mut Run<'_>) -> Where {
    let mut notes = Vec::new();
    let mut dst = state_of(run.driver, Side::Destination).await;
    // The destination finishes loading a moment after the source reports completion,
    // while the guest is paused: its `completed` event ends the wait at once; without
    // events it is asked again every millisecond.
    let settle = Instant::now() + SETTLE;
    let mut loaded_now = false;
    while matches!(dst, RunState::InMigrate) && Instant::now() < settle {
        tokio::select! {
            event = run.next_event() => if let Some(event) = event {
                run.record_late(&event, MigrationStatus::Completed);
            },
            _ = tokio::time::sleep(DESTINATION_POLL) => {}
        }
        // QEMU's own `completed` on the destination says the state is loaded: start it
        // without asking first, since the guest is paused until it runs. (`cont` on a
        // destination that started by itself changes nothing.)
        if run.seen.destination_loaded && run.plan.destination.resume {
            loaded_now = true;
            break;
        }
        dst = state_of(run.driver, Side::Destination).await;
    }
    // The reply that said "paused" may have overtaken nothing but its own event: take
    // in what has arrived, so that QEMU's `completed` spares the question below.
    while let Some(event) = run.try_next_event() {
        run.record_late(&event, MigrationStatus::Completed);
    }
    if (loaded_now || matches!(dst, RunState::Paused { .. })) && run.plan.destination.resume {
        let reported = run.seen.destination_loaded;
        dst = start_destination(run, reported, &mut notes).await;
    }
    read_final_stats(run).await;
    let src = state_of(run.driver, Side::Source).await;
    // The source QEMU may live on (or be used again): leave it as the run found it. The
    // TLS credentials the run added go too, on both sides, once the destination runs.
    if let Err(e) = run.driver.restore().await {
        notes.push(format!("restoring migration settings failed: {e}"));
    }
    let after = After::Completion {
        resume: run.plan.destination.resume,
    };
    Where::judge(src, dst, after, notes)
}

/// Starts a destination that waits paused, only once it reports its incoming migration
/// completed (its event, `reported`, or asked now); returns its run state afterwards.
async fn start_destination(run: &mut Run<'_>, reported: bool, notes: &mut Vec<String>) -> RunState {
    let loaded = reported
        || matches!(
            run.driver.destination_migration().await,
            Ok(MigrationStatus::Completed)
        );
    if !loaded {
        notes.push(
            "the destination did not report the incoming migration completed; it was left paused".into(),
        );
        return state_of(run.driver, Side::Destination).await;
    }
    if let Err(e) = run.driver.resume(Side::Destination).await {
        notes.push(format!("starting the destination failed: {e}"));
    }
    state_of(run.driver, Side::Destination).await
}
