//! Repairing what a run that did not finish left behind (the tool killed, its machine
//! rebooted, its terminal closed): `vfio-migrate recover`, and the guardian that does the
//! same when the tool dies.
//!
//! It looks first ([`Sides::look`]), then does only what is safe, in this order:
//! 1. a migration nobody drives is cancelled (and waited for);
//! 2. a throttle and the settings the journal says a run changed are put back;
//! 3. a paused source is resumed, but only while the destination does not run;
//! 4. a destination holding a completed migration paused is started, but only when the
//!    source handed over (`postmigrate`) and the plan wants it started;
//!
//! then looks again and says what it found, what it did, and whether a person must now
//! decide (both sides running, or nothing that explains the state).

use std::time::Duration;

use plans::Plan;
use serde::Serialize;
use tokio::time::Instant;

use crate::driver::{Driver, Side};
use crate::exit::ExitStatus;
use crate::placement::{Placement, Sides};
use crate::report::RunningOn;

/// How long a cancel may take to reach a final status.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// What a journal says an unfinished run changed.
#[derive(Debug, Clone, Default)]
pub struct Journaled {
    /// The backend's saved settings, to put back (see [`Driver::saved_settings`]).
    pub saved_settings: Option<serde_json::Value>,
    /// The run throttled the guest.
    pub throttled: bool,
}

/// What a repair found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// Both sides before anything was done.
    pub found: Sides,
    /// What they added up to.
    pub found_placement: Placement,
    /// What was done, in order, in words.
    pub done: Vec<String>,
    /// What could not be done, in words.
    pub failed_steps: Vec<String>,
    /// Both sides at the end.
    pub now: Sides,
    /// What they add up to now.
    pub placement: Placement,
    /// Where the VM runs now.
    pub running_on: RunningOn,
    /// Whether anything was changed.
    pub changed: bool,
    /// The exit code: 0 when the VM runs in exactly one place (or the destination holds
    /// it as the plan asked), 4 when a person must decide.
    pub rc: i32,
    /// One line for people and Ansible.
    pub msg: String,
}

/// Looks at both sides and repairs what is safe (see the module docs).
pub async fn repair(plan: &Plan, driver: &mut dyn Driver, journaled: &Journaled) -> Repair {
    let found = Sides::look(driver).await;
    let found_placement = found.placement();
    let mut done = Vec::new();
    let mut failed_steps = Vec::new();
    let mut note = |result: Result<(), String>, what: String| match result {
        Ok(()) => done.push(what),
        Err(e) => failed_steps.push(format!("{what}: {e}")),
    };

    if let Placement::InProgress { status } = &found_placement {
        let result = cancel_and_wait(driver).await;
        note(
            result,
            format!("cancelled the migration nobody drove (it was {status})"),
        );
    }
    if journaled.throttled {
        let result = driver.release_throttle().await.map_err(|e| e.to_string());
        note(result, "removed the throttle a run had set".into());
    }
    if let Some(saved) = &journaled.saved_settings {
        let result = match driver.adopt_saved_settings(saved.clone()) {
            Ok(()) => driver.restore().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        note(result, "put back the migration settings a run had changed".into());
    }

    let mid = Sides::look(driver).await;
    match mid.placement() {
        Placement::SourcePaused { state } => {
            let result = driver.resume(Side::Source).await.map_err(|e| e.to_string());
            note(
                result,
                format!("resumed the source, which a migration had left {state}"),
            );
        }
        Placement::CompletedPaused if plan.destination.resume => {
            let result = driver.resume(Side::Destination).await.map_err(|e| e.to_string());
            note(
                result,
                "started the destination, which held the completed migration paused".into(),
            );
        }
        _ => {}
    }

    let now = if done.is_empty() {
        mid
    } else {
        settle(driver).await
    };
    conclude(plan, found, found_placement, done, failed_steps, now)
}

/// Sends `migrate_cancel` and waits until the source reports a final status.
async fn cancel_and_wait(driver: &mut dyn Driver) -> Result<(), String> {
    driver.cancel().await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + CANCEL_WAIT;
    while Instant::now() < deadline {
        match driver.sample().await {
            Ok(s) if !s.status.in_progress() => return Ok(()),
            Err(e) if e.disconnected => return Err(e.to_string()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Err(format!(
        "the migration was not over {}s after the cancel",
        CANCEL_WAIT.as_secs()
    ))
}

/// Looks again once QEMU has had a moment to act on what was done (a cancel resumes the
/// source by itself; `cont` takes effect at once).
async fn settle(driver: &mut dyn Driver) -> Sides {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = Sides::look(driver).await;
        let still_moving = matches!(now.placement(), Placement::SourcePaused { .. });
        if !still_moving || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn conclude(
    plan: &Plan,
    found: Sides,
    found_placement: Placement,
    done: Vec<String>,
    failed_steps: Vec<String>,
    now: Sides,
) -> Repair {
    let placement = now.placement();
    let settled = match &placement {
        Placement::OnSource | Placement::Migrated | Placement::DestinationSpent { .. } => true,
        Placement::CompletedPaused => !plan.destination.resume,
        _ => false,
    };
    let rc = match settled {
        true => ExitStatus::Migrated,
        false => ExitStatus::NeedsAttention,
    }
    .code();
    let running_on = now.running_on();
    let msg = match (settled, &running_on) {
        (true, RunningOn::Source) => "the VM runs on the source".to_string(),
        (true, _) => "the VM runs on the destination".to_string(),
        (false, _) => format!(
            "a person must decide: {}",
            crate::preflight::Problem::Placement {
                placement: placement.clone(),
                sides: now.clone(),
            }
        ),
    };
    Repair {
        found,
        found_placement,
        changed: !done.is_empty(),
        done,
        failed_steps,
        now,
        placement,
        running_on,
        rc,
        msg,
    }
}
