//! After QEMU reports the migration completed: wait for it, start the destination if it
//! waits paused (never before completion), and confirm the source handed over.

use std::time::Duration;

use plans::Plan;
use tokio::time::Instant;

use crate::driver::{Driver, DriverEvent, MigrationStatus, RunState, Side};
use crate::report::RunningOn;
use crate::run::{Ending, Observed, SETTLE};

/// After `migrate-continue`: waits until QEMU says completed or failed.
pub(crate) async fn wait_for_completion<D: Driver>(
    driver: &mut D,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<DriverEvent>,
    seen: &mut Observed,
    patience: Duration,
) -> Ending {
    // The device stage lasts as long as the downtime the plan allows, at most.
    let deadline = Instant::now() + SETTLE.max(patience);
    loop {
        // Events first: the status change usually arrives before a poll would see it.
        while let Ok(event) = events.try_recv() {
            seen.record_late(&event, "device");
            if let DriverEvent::Migration { status, .. } = &event {
                match status {
                    MigrationStatus::Completed => return completed(driver, seen).await,
                    MigrationStatus::Failed | MigrationStatus::Cancelled => break,
                    _ => {}
                }
            }
        }
        match driver.sample().await {
            Ok(s) => {
                let status = s.status.clone();
                let error = s.error.clone();
                seen.last_sample = Some(s);
                match status {
                    MigrationStatus::Completed => return Ending::Completed,
                    MigrationStatus::Failed | MigrationStatus::Cancelled => {
                        return Ending::Failed(
                            error.unwrap_or_else(|| "migration failed during switchover".into()),
                        )
                    }
                    _ => {}
                }
            }
            Err(e) if e.disconnected => return Ending::Failed(e.to_string()),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Ending::Failed("migration did not complete after switchover".into());
        }
        tokio::select! {
            event = events.recv() => if let Some(event) = event {
                seen.record_late(&event, "device");
                if let DriverEvent::Migration { status: MigrationStatus::Completed, .. } = event {
                    return completed(driver, seen).await;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Reads the final statistics (downtime, total time) once QEMU reports completion.
async fn completed<D: Driver>(driver: &mut D, seen: &mut Observed) -> Ending {
    if let Ok(s) = driver.sample().await {
        seen.last_sample = Some(s);
    }
    Ending::Completed
}

/// After completion: start the destination if it waits paused (never before completion),
/// and confirm the source handed over.
pub(crate) async fn verify<D: Driver>(
    plan: &Plan,
    driver: &mut D,
) -> (RunningOn, Option<String>, Option<String>, Vec<String>) {
    let mut notes = Vec::new();
    let mut dst = driver
        .run_state(Side::Destination)
        .await
        .unwrap_or(RunState::Gone);
    // The destination finishes loading a moment after the source reports completion.
    let settle = Instant::now() + SETTLE;
    while matches!(dst, RunState::InMigrate) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
        dst = driver
            .run_state(Side::Destination)
            .await
            .unwrap_or(RunState::Gone);
    }
    if let RunState::Paused { .. } = &dst {
        if plan.destination.resume {
            let loaded = matches!(
                driver.destination_migration().await,
                Ok(MigrationStatus::Completed)
            );
            if loaded {
                if let Err(e) = driver.resume(Side::Destination).await {
                    notes.push(format!("starting the destination failed: {e}"));
                }
                dst = driver
                    .run_state(Side::Destination)
                    .await
                    .unwrap_or(RunState::Gone);
            } else {
                notes.push(
                    "the destination did not report the incoming migration completed; it was left paused"
                        .into(),
                );
            }
        }
    }
    let src = driver.run_state(Side::Source).await.unwrap_or(RunState::Gone);
    let running_on = match (&src, &dst) {
        (RunState::Running, RunState::Running) => {
            notes.push(
                "BOTH sides report running: stop one by hand after checking which has the newer state".into(),
            );
            RunningOn::Unknown
        }
        (_, RunState::Running) => RunningOn::Destination,
        (_, RunState::Paused { .. }) if !plan.destination.resume && src == RunState::PostMigrate => {
            notes.push(
                "the destination holds the VM paused, as the plan asked (destination.resume = false)".into(),
            );
            RunningOn::Destination
        }
        _ => RunningOn::Unknown,
    };
    (running_on, Some(src.name()), Some(dst.name()), notes)
}
