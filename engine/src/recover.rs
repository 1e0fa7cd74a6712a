//! After a cancel, failure or interrupt: make sure the migration is over, undo what the
//! tool changed, and get the source running again unless the destination runs the VM.

use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{Driver, RunState, Sample, Side};
use crate::state::{Observed, Run, SETTLE};
use crate::verify::{After, Where};

/// Cancels whatever migration may run, removes the throttle, restores settings, and
/// resumes the source unless the destination runs the VM.
pub(crate) async fn recover(run: &mut Run<'_>) -> Where {
    let mut notes = Vec::new();
    cancel_and_settle(run.driver, &mut run.seen, &mut notes).await;
    if run.seen.throttled {
        if let Err(e) = run.driver.release_throttle().await {
            notes.push(format!("removing the throttle failed: {e}"));
        }
    }
    if let Err(e) = run.driver.restore().await {
        notes.push(format!("restoring migration settings failed: {e}"));
    }
    let (src, dst) = resume_source_if_safe(run.driver, run.seen.stopped_by_us, &mut notes).await;
    Where::judge(src, dst, After::Recovery, notes)
}

/// Always cancels first (whatever the last reading said: a reading that timed out is no
/// proof that nothing runs), then waits until QEMU reports the migration over.
async fn cancel_and_settle(driver: &mut dyn Driver, seen: &mut Observed, notes: &mut Vec<String>) {
    if let Err(e) = driver.cancel().await {
        notes.push(format!("cancelling failed: {e}"));
    }
    let deadline = Instant::now() + SETTLE;
    loop {
        match driver.sample().await {
            Ok(s) if !s.status.in_progress() => {
                keep_stats(seen, s);
                return;
            }
            // After a cancel QEMU drops the RAM statistics; keep the last ones that have
            // them for the report.
            Ok(s) => keep_stats(seen, s),
            Err(e) if e.disconnected => return,
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            notes.push("the migration did not reach cancelled in time".into());
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asks both sides where they are and resumes a paused source when the destination
/// does not run the VM. QEMU resumes the source by itself after a cancel, unless it could
/// not reactivate its disks; it gets a moment for that first.
async fn resume_source_if_safe(
    driver: &mut dyn Driver,
    stopped_by_us: bool,
    notes: &mut Vec<String>,
) -> (RunState, RunState) {
    let dst = state_of(driver, Side::Destination).await;
    let mut src = state_of(driver, Side::Source).await;
    let settle = Instant::now() + Duration::from_secs(2);
    while matches!(src, RunState::Paused { .. })
        && dst != RunState::Running
        && Instant::now() < settle
        && !stopped_by_us
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        src = state_of(driver, Side::Source).await;
    }
    // A destination that does not answer may hold the VM: then a person decides.
    let dst_silent = matches!(dst, RunState::NotAnswering { .. });
    if dst != RunState::Running
        && !dst_silent
        && matches!(src, RunState::Paused { .. } | RunState::PostMigrate)
    {
        match driver.resume(Side::Source).await {
            Ok(()) => notes.push("the source was left paused; it was resumed".into()),
            Err(e) => notes.push(format!("resuming the source failed: {e}")),
        }
        src = state_of(driver, Side::Source).await;
    }
    (src, dst)
}

/// A side's run state. A closed connection is `gone`; a side that answered something
/// unreadable is not guessed at: it counts as not answering (it may still hold the VM).
pub(crate) async fn state_of(driver: &mut dyn Driver, side: Side) -> RunState {
    match driver.run_state(side).await {
        Ok(state) => state,
        Err(e) if e.disconnected => RunState::Gone,
        Err(_) => RunState::NotAnswering { after_ms: 0 },
    }
}

fn keep_stats(seen: &mut Observed, sample: Sample) {
    match &mut seen.last_sample {
        Some(last) if sample.total_bytes == 0 => {
            last.status = sample.status;
            last.error = sample.error.or(last.error.take());
        }
        _ => seen.last_sample = Some(sample),
    }
}
