//! Every sentence the engine says about why: stalls, aborts, gate violations, preflight
//! problems and endings are typed everywhere else and turned into words only here, so
//! wording stays consistent and follows CONTRIBUTING.md's rules for messages.

use std::fmt::{Display, Formatter, Result};

use plans::units::format_bytes as b;

use crate::gate::GateViolation;
use crate::outcome::Reason;
use crate::placement::{Placement, Sides};
use crate::policy::{AbortReason, Because, Skipped, StallReason, Trigger};
use crate::preflight::Problem;
use crate::sizing::{Aim, Bound, Setting, Sizing, COMFORT, PASSES_TO_FIT};

impl Display for StallReason {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            StallReason::DirtyRateAboveBandwidth {
                dirty_rate,
                bandwidth,
            } => write!(
                f,
                "dirty rate {}/s is not below bandwidth {}/s",
                b(*dirty_rate),
                b(*bandwidth)
            ),
            StallReason::NoProgress { remaining, best } => {
                write!(f, "remaining {} did not shrink below {}", b(*remaining), b(*best))
            }
            StallReason::DeviceStateTooLarge {
                device_bytes,
                threshold,
            } => write!(
                f,
                "device state {} exceeds what the downtime limit allows ({})",
                b(*device_bytes),
                b(*threshold)
            ),
        }
    }
}
impl Display for AbortReason {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            AbortReason::NotConverging { stall } => write!(f, "not converging: {stall}"),
            AbortReason::NeedsMoreDowntime { needed_ms, max_ms } => write!(
                f,
                "completing would need {needed_ms}ms of downtime, more than limits.max_downtime ({max_ms}ms)"
            ),
            AbortReason::EscalationExhausted { stall } => {
                write!(f, "every escalation step was taken and it still stalls: {stall}")
            }
            AbortReason::Deadline { deadline_ms } => {
                write!(f, "limits.deadline ({deadline_ms}ms) passed")
            }
            AbortReason::PauseTooLong {
                pause_ms,
                pending_bytes,
                bandwidth,
                max_ms,
            } => write!(
                f,
                "switching over now would pause the guest about {pause_ms}ms ({} of RAM and declared device state at {}/s), more than limits.max_downtime ({max_ms}ms)",
                b(*pending_bytes),
                b(*bandwidth)
            ),
        }
    }
}

impl Display for GateViolation {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            GateViolation::NotSaving { device, last_state, seen_at_ms, timeout_ms } => {
                write!(f, "VFIO device {device} did not reach its saving state within {timeout_ms}ms (last state {last_state}")?;
                match seen_at_ms {
                    Some(at) => write!(f, ", seen at {at}ms)"),
                    None => write!(f, "; no VFIO_MIGRATION event was received)"),
                }
            }
            GateViolation::UnexpectedState { device, state, at_ms } => {
                write!(f, "VFIO device {device} went to {state} at {at_ms}ms while the migration ran")
            }
            GateViolation::Unplugged { device, at_ms } => write!(
                f,
                "VFIO device {device} was unplugged at {at_ms}ms during the migration: its DMA since the last dirty sync is unknown"
            ),
            GateViolation::NotStopCopyAtSwitchover { device, state } => {
                write!(f, "VFIO device {device} was in {state}, not ready to save its final state, when the VM stopped for switchover")
            }
        }
    }
}

impl Display for Trigger {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            Trigger::Stall(stall) => stall.fmt(f),
            Trigger::Deadline { deadline_ms } => write!(f, "limits.deadline ({deadline_ms}ms) passed"),
            Trigger::Check {
                dirty_rate,
                target_rate,
            } => write!(
                f,
                "dirty rate {}/s measured under the throttle is still above the {}/s it aimed for",
                b(*dirty_rate),
                b(*target_rate)
            ),
        }
    }
}

impl Display for Because {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        self.trigger.fmt(f)?;
        match &self.sizing {
            Some(sizing) => write!(f, "; {sizing}"),
            None => Ok(()),
        }
    }
}

impl Display for Setting {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            Setting::Percent { percent } => write!(f, "throttle {percent}%"),
            Setting::Limit { mib_per_sec } => write!(f, "dirty limit {mib_per_sec}MiB/s per vCPU"),
        }
    }
}

/// `throttle 76%: dirty 200MiB/s at 1% must fall to 60MiB/s for 256MiB left to shrink
/// below 56MiB (bandwidth 128MiB/s × downtime-limit 1000ms, less 72MiB of device state)
/// within 2 passes`.
impl Display for Sizing {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        write!(f, "{}: dirty {}/s", self.setting, b(self.dirty_rate))?;
        if let Some(limit) = self.measured_under_limit {
            write!(f, " under {limit}MiB/s")?;
        } else if self.measured_at_percent > 0 {
            write!(f, " at {}%", self.measured_at_percent)?;
        }
        let target = b(self.target_rate);
        match self.aim {
            Aim::Fit {
                remaining,
                budget,
                bandwidth,
                downtime_ms,
                device_bytes,
            } => {
                write!(
                    f,
                    " must fall to {target}/s for {} left to shrink below {} (bandwidth {}/s × downtime-limit {downtime_ms}ms",
                    b(remaining),
                    b(budget),
                    b(bandwidth)
                )?;
                if device_bytes > 0 {
                    write!(f, ", less {} of device state", b(device_bytes))?;
                }
                write!(f, ") within {PASSES_TO_FIT} passes")?;
            }
            Aim::UnderBandwidth { bandwidth } => write!(
                f,
                " must fall below {COMFORT} × bandwidth {}/s ({target}/s)",
                b(bandwidth)
            )?,
            Aim::NoBandwidth => f.write_str(" with no bandwidth measured yet: the plan's value")?,
        }
        match self.bound {
            Some(Bound::ThrottleMax { percent }) => write!(f, "; held at policy.throttle_max ({percent}%)"),
            Some(Bound::ThrottleInitial { percent }) => {
                write!(f, "; at least policy.throttle_initial ({percent}%)")
            }
            Some(Bound::ThrottleIncrement { percent }) => {
                write!(
                    f,
                    "; at least policy.throttle_increment above the last ({percent}%)"
                )
            }
            Some(Bound::DirtyLimitFloor { mib_per_sec }) => {
                write!(
                    f,
                    "; raised to policy.dirty_limit ({mib_per_sec}MiB/s), the floor"
                )
            }
            None => Ok(()),
        }
    }
}

impl Display for Skipped {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        write!(
            f,
            "{}: needs {}ms, above limits.max_downtime ({}ms)",
            self.step.name(),
            self.needed_ms,
            self.max_ms
        )
    }
}

impl Display for Problem {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            Problem::Driver { error } => error.fmt(f),
            Problem::QemuTooOld {
                side,
                version,
                needs,
                feature,
                key,
            } => write!(
                f,
                "QEMU {version} on the {side} is older than {needs}, which `{feature}` needs (for {key}); upgrade QEMU there"
            ),
            Problem::Placement { placement, sides } => placement_words(f, placement, sides),
            // The source runs the VM here (placement `on_source`): restarting the
            // destination cannot lose it.
            Problem::DestinationNotWaiting { state } => write!(
                f,
                "destination: not waiting for an incoming migration (state {state}); start it with `-incoming defer`"
            ),
            Problem::DestinationNotListening => f.write_str(
                "destination: not listening for the migration stream (QEMU reports no incoming migration: started with `-incoming defer` and never told where); set `listen` in [destination] so that the tool makes it listen, or start it with `-incoming tcp:HOST:PORT`",
            ),
            Problem::IncomingAlreadySetUp { status } => write!(
                f,
                "destination: already has an incoming migration set up (status {status}); drop `listen` from the plan, or start a new destination QEMU with `-incoming defer`"
            ),
            Problem::Blocked { reason } => write!(f, "source: QEMU blocks migration: {reason}"),
            Problem::DestinationRefuses { reason } => write!(f, "destination: cannot take the VM: {reason}"),
            Problem::RamDiffers {
                source,
                destination,
            } => write!(
                f,
                "destination: guest RAM differs ({source} bytes on the source, {destination} here)"
            ),
            Problem::DirtyLimitNeedsRing => f.write_str(
                "source: policy.throttle = \"dirty-limit\" needs the KVM dirty ring, which this guest does not have (start QEMU with -accel kvm,dirty-ring-size=4096, or use \"auto-converge\")",
            ),
            Problem::Unsupported { capability, key } => write!(
                f,
                "the plan's {key} needs {capability}, which this backend cannot do"
            ),
            Problem::DeviceMissing { id, present } => {
                let present = match present.is_empty() {
                    true => "none".to_string(),
                    false => present.join(", "),
                };
                write!(f, "source: VFIO device {id} not found (VFIO devices there: {present})")
            }
            Problem::DeviceEventsUnsupported { id } => write!(
                f,
                "source: VFIO device {id} has no `migration-events` property (QEMU 9.1 or newer is needed to follow device states)"
            ),
            Problem::DeviceEventsOff { id, refusal } => write!(
                f,
                "source: VFIO device {id} has migration-events=off and QEMU refused to turn it on at runtime ({refusal}); start QEMU with `-device vfio-pci,...,id={id},migration-events=on` (libvirt: a <qemu:override> setting migration-events on the hostdev's alias)"
            ),
            Problem::CapabilityMissing {
                side,
                capability,
                key,
            } => write!(
                f,
                "{side}: QEMU does not offer the migration capability `{capability}`, which the plan's {key} needs"
            ),
            Problem::DeviceTransferUnsupported { id } => write!(
                f,
                "source: VFIO device {id} has no `x-migration-multifd-transfer` property (QEMU 10.0 or newer chooses the channel for a device's state); remove migration.device_state_transfer"
            ),
            Problem::UnlistedDevice { id, type_name } => write!(
                f,
                "source: VFIO device {id} ({type_name}) is not listed in the plan; add a [[devices]] entry for it, or set vm.allow_unlisted_devices = true"
            ),
        }
    }
}

/// Where both sides stand, and what to do about it. No hint ever suggests restarting a
/// QEMU that runs (or holds) the VM.
fn placement_words(f: &mut Formatter<'_>, placement: &Placement, sides: &Sides) -> Result {
    let (src, dst) = (&sides.source, &sides.destination);
    match placement {
        Placement::OnSource => write!(f, "the source runs the VM (source {src}, destination {dst})"),
        Placement::Migrated => write!(
            f,
            "already migrated: the destination runs the VM (source {src}, destination {dst})"
        ),
        Placement::CompletedPaused => write!(
            f,
            "the migration already completed and the destination holds the VM paused (source {src}): `vfio-migrate recover` starts it there"
        ),
        Placement::InProgress { status } => write!(
            f,
            "source: a migration is already in progress (status {status}); if no vfio-migrate run drives it, `vfio-migrate recover` cancels it and makes sure the source runs"
        ),
        Placement::SourcePaused { state } => write!(
            f,
            "source: the VM is paused (state {state}) and the destination does not run it (state {dst}); `vfio-migrate recover` resumes it"
        ),
        Placement::DestinationSpent { status } => write!(
            f,
            "destination: its incoming migration already ran (status {status}) and QEMU accepts `migrate-incoming` only once; the source runs the VM, so start a new destination QEMU with `-incoming defer`"
        ),
        Placement::BothRunning => write!(
            f,
            "BOTH sides run a guest (source {src}, destination {dst}): a person must decide which one is the VM and stop the other"
        ),
        Placement::Unclear => write!(
            f,
            "cannot tell where the VM runs (source {src}, migration {}; destination {dst}, migration {}): a person must decide",
            sides.source_migration, sides.destination_migration
        ),
    }
}

impl Display for crate::controls::ShareInForce {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        write!(
            f,
            "bandwidth share now {}/s of the evacuation's budget (max-bandwidth)",
            b(self.0)
        )
    }
}

impl Display for Reason {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        match self {
            Reason::NotReady { problems } => {
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    problem.fmt(f)?;
                }
                Ok(())
            }
            Reason::Policy {
                pass: Some(pass),
                abort,
            } => write!(f, "pass {pass}: {abort}"),
            Reason::Policy { pass: None, abort } => abort.fmt(f),
            Reason::Device { violation } => violation.fmt(f),
            Reason::Interrupted => f.write_str("interrupted by the operator"),
            Reason::Driver { error } => error.fmt(f),
            Reason::ContinueFailed { error } => write!(f, "could not continue at pre-switchover: {error}"),
            Reason::MigrationFailed {
                qemu_error: Some(error),
                ..
            } => f.write_str(error),
            Reason::MigrationFailed {
                during_switchover: true,
                qemu_error: None,
            } => f.write_str("migration failed during switchover"),
            Reason::MigrationFailed { .. } => f.write_str("migration failed"),
            Reason::CancelledElsewhere => f.write_str("migration was cancelled by someone else"),
            Reason::EventsClosed => f.write_str("the connection to the hypervisors closed"),
            Reason::ConnectionLost { side, why } => write!(f, "{side}: connection lost: {why}"),
            Reason::SwitchoverTimedOut => f.write_str("migration did not complete after switchover"),
            Reason::NotConfirmed => f.write_str("the destination could not be confirmed running"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{MigrationStatus, RunState};

    fn sides(source: RunState, destination: RunState) -> Sides {
        Sides {
            source,
            source_migration: MigrationStatus::PreSwitchover,
            destination,
            destination_migration: MigrationStatus::Active,
        }
    }

    #[test]
    fn run_states_and_statuses_read_as_qemu_spells_them() {
        let waiting = Problem::DestinationNotWaiting {
            state: RunState::Paused {
                reason: "prelaunch".into(),
            },
        };
        assert!(waiting.to_string().contains("(state prelaunch)"), "{waiting}");
        let frozen = RunState::Paused {
            reason: "finish-migrate".into(),
        };
        let busy = Problem::Placement {
            placement: Placement::InProgress {
                status: MigrationStatus::PreSwitchover,
            },
            sides: sides(frozen, RunState::InMigrate),
        };
        assert!(busy.to_string().contains("(status pre-switchover)"), "{busy}");
    }

    #[test]
    fn no_hint_restarts_a_qemu_that_runs_or_holds_the_vm() {
        let held = RunState::Paused {
            reason: "paused".into(),
        };
        for (placement, dst) in [
            (Placement::Migrated, RunState::Running),
            (Placement::CompletedPaused, held),
            (Placement::BothRunning, RunState::Running),
            (Placement::Unclear, RunState::Running),
        ] {
            let problem = Problem::Placement {
                placement,
                sides: sides(RunState::PostMigrate, dst),
            };
            let words = problem.to_string();
            assert!(
                !words.contains("-incoming defer") && !words.contains("restart"),
                "{words}"
            );
        }
    }

    #[test]
    fn a_qemu_too_old_names_version_side_release_and_feature() {
        let old = Problem::QemuTooOld {
            side: crate::Side::Source,
            version: "8.0.0".into(),
            needs: crate::preflight::Release { major: 8, minor: 1 },
            feature: "switchover-ack",
            key: "devices with precopy = true",
        };
        assert_eq!(
            old.to_string(),
            "QEMU 8.0.0 on the source is older than 8.1, which `switchover-ack` needs (for devices with precopy = true); upgrade QEMU there"
        );
    }

    #[test]
    fn a_policy_abort_names_the_pass_it_was_decided_at() {
        let reason = Reason::Policy {
            pass: Some(4),
            abort: AbortReason::Deadline { deadline_ms: 600_000 },
        };
        assert_eq!(reason.to_string(), "pass 4: limits.deadline (600000ms) passed");
    }

    #[test]
    fn not_ready_lists_every_problem() {
        let reason = Reason::NotReady {
            problems: vec![
                Problem::Blocked {
                    reason: "VFIO migration is not supported in kernel".into(),
                },
                Problem::DirtyLimitNeedsRing,
            ],
        };
        let words = reason.to_string();
        assert!(words.starts_with("source: QEMU blocks migration: VFIO migration is not supported in kernel; source: policy.throttle"), "{words}");
    }
}
