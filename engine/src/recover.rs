//! After a cancel, failure or interrupt: make sure the migration is over, undo what the
//! tool changed, and get the source running again unless the destination runs the VM.
//!
//! A side whose monitor connection was lost is connected to again, once: a closed
//! connection does not mean its QEMU is gone, and a migration nobody cancels would stop
//! the guest at `pre-switchover` with nobody there to answer.

use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{Driver, RunState, Sample, Side};
use crate::state::{Observed, Run, SETTLE};
use crate::verify::{After, Where};

/// What an operator must be told when the source cannot be reached and the destination
/// still waits for an incoming migration.
pub(crate) const SOURCE_UNREACHABLE: &str = "the source's monitor cannot be reached and the destination still waits for an incoming migration. \
If the source's QEMU is gone, so is the VM: start it again from its configuration, and never start the destination, which holds an incomplete migration. \
If the source's QEMU lives on, its migration may still run and would hold the guest at pre-switchover: run `vfio-migrate recover` once its monitor answers";

/// Cancels whatever migration may run, removes the throttle, restores settings, and
/// resumes the source unless the destination runs the VM.
pub(crate) async fn recover(run: &mut Run<'_>) -> Where {
    let mut notes = Vec::new();
    let mut reach = Reach::default();
    cancel_and_settle(run.driver, &mut run.seen, &mut reach, &mut notes).await;
    if run.seen.throttled {
        if let Err(e) = run.driver.release_throttle().await {
            notes.push(format!("removing the throttle failed: {e}"));
        }
    }
    if let Err(e) = run.driver.restore().await {
        notes.push(format!("restoring migration settings failed: {e}"));
    }
    let (src, dst) = resume_source_if_safe(run.driver, run.seen.stopped_by_us, &mut reach, &mut notes).await;
    // Still waiting for an incoming migration: the destination never got the whole VM.
    if src == RunState::Gone && dst == RunState::InMigrate {
        notes.push(SOURCE_UNREACHABLE.into());
    }
    Where::judge(src, dst, After::Recovery, notes)
}

/// Connecting again to sides whose connection was lost: at most once each per recovery.
#[derive(Default)]
struct Reach {
    tried: Vec<Side>,
}

impl Reach {
    /// Connects to `side` again unless that was tried already; whether it worked.
    async fn again(&mut self, driver: &mut dyn Driver, side: Side, notes: &mut Vec<String>) -> bool {
        if self.tried.contains(&side) {
            return false;
        }
        self.tried.push(side);
        match driver.reconnect(side).await {
            Ok(()) => {
                notes.push(format!(
                    "connected to the {side}'s monitor again after its connection was lost"
                ));
                true
            }
            Err(e) => {
                notes.push(format!("cannot connect to the {side}'s monitor again: {e}"));
                false
            }
        }
    }

    /// A side's run state ([`state_of`]); a side whose connection was lost (`gone`) is
    /// connected to again and asked once more. One that does not answer is left alone.
    async fn ask(&mut self, driver: &mut dyn Driver, side: Side, notes: &mut Vec<String>) -> RunState {
        let state = state_of(driver, side).await;
        if state == RunState::Gone && self.again(driver, side, notes).await {
            return state_of(driver, side).await;
        }
        state
    }
}

/// Always cancels first (whatever the last reading said: a reading that timed out is no
/// proof that nothing runs), then waits until QEMU reports the migration over.
async fn cancel_and_settle(
    driver: &mut dyn Driver,
    seen: &mut Observed,
    reach: &mut Reach,
    notes: &mut Vec<String>,
) {
    if let Err(e) = driver.cancel().await {
        notes.push(format!("cancelling failed: {e}"));
        if e.disconnected && reach.again(driver, Side::Source, notes).await {
            match driver.cancel().await {
                Ok(()) => notes.push("cancelled over the new connection".into()),
                Err(e) => notes.push(format!("cancelling failed again: {e}")),
            }
        }
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
    reach: &mut Reach,
    notes: &mut Vec<String>,
) -> (RunState, RunState) {
    let dst = reach.ask(driver, Side::Destination, notes).await;
    let mut src = reach.ask(driver, Side::Source, notes).await;
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
