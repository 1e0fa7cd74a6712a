//! After a cancel, failure or interrupt: make sure the migration is over, undo what the
//! tool changed, and get the source running again unless the destination runs the VM.

use std::time::Duration;

use tokio::time::Instant;

use crate::driver::{Driver, MigrationStatus, RunState, Side};
use crate::report::RunningOn;
use crate::run::{Observed, SETTLE};

/// After a cancel, failure or interrupt: make sure the migration is over, undo throttling
/// and settings, and get the source running again unless the destination runs the VM.
pub(crate) async fn recover<D: Driver>(
    driver: &mut D,
    seen: &mut Observed,
) -> (RunningOn, Option<String>, Option<String>, Vec<String>) {
    let mut notes = Vec::new();
    let status = driver.sample().await.map(|s| s.status);
    let in_progress = matches!(&status, Ok(s) if !s.is_final() && *s != MigrationStatus::None);
    if in_progress {
        if let Err(e) = driver.cancel().await {
            notes.push(format!("cancelling failed: {e}"));
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            match driver.sample().await {
                // After a cancel QEMU drops the RAM statistics; keep the last ones
                // that have them for the report.
                Ok(s) if s.status.is_final() || s.status == MigrationStatus::None => {
                    keep_stats(seen, s);
                    break;
                }
                Ok(s) => keep_stats(seen, s),
                Err(e) if e.disconnected => break,
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                notes.push("the migration did not reach cancelled in time".into());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if seen.throttled {
        if let Err(e) = driver.release_throttle().await {
            notes.push(format!("removing the throttle failed: {e}"));
        }
    }
    if let Err(e) = driver.restore().await {
        notes.push(format!("restoring migration settings failed: {e}"));
    }

    let dst = driver
        .run_state(Side::Destination)
        .await
        .unwrap_or(RunState::Gone);
    let mut src = driver.run_state(Side::Source).await.unwrap_or(RunState::Gone);
    // QEMU resumes the source by itself after a cancel, unless it could not reactivate
    // its disks; wait a moment for that before deciding to resume it ourselves.
    let settle = Instant::now() + Duration::from_secs(2);
    while matches!(src, RunState::Paused { .. })
        && dst != RunState::Running
        && Instant::now() < settle
        && !seen.stopped_by_us
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        src = driver.run_state(Side::Source).await.unwrap_or(RunState::Gone);
    }
    if dst != RunState::Running && matches!(src, RunState::Paused { .. } | RunState::PostMigrate) {
        match driver.resume(Side::Source).await {
            Ok(()) => notes.push("the source was left paused; it was resumed".into()),
            Err(e) => notes.push(format!("resuming the source failed: {e}")),
        }
        src = driver.run_state(Side::Source).await.unwrap_or(RunState::Gone);
    }
    let running_on = match (&src, &dst) {
        (RunState::Running, RunState::Running) => {
            notes.push(
                "BOTH sides report running: stop one by hand after checking which has the newer state".into(),
            );
            RunningOn::Unknown
        }
        (RunState::Running, _) => RunningOn::Source,
        (_, RunState::Running) => RunningOn::Destination,
        _ => RunningOn::Unknown,
    };
    (running_on, Some(src.name()), Some(dst.name()), notes)
}

fn keep_stats(seen: &mut Observed, sample: crate::driver::Sample) {
    match &mut seen.last_sample {
        Some(last) if sample.total_bytes == 0 => {
            last.status = sample.status;
            last.error = sample.error.or(last.error.take());
        }
        _ => seen.last_sample = Some(sample),
    }
}
