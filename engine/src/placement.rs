//! Where the VM is, judged from what both sides say right now, never assumed.
//!
//! Every run looks before it changes anything, and `recover` looks before it repairs: a
//! VM already on the destination is reported as migrated (nothing to do), a half-done
//! migration is found for what it is, and a state nobody can judge safely is named for a
//! person to decide.

use serde::Serialize;

use crate::driver::{Driver, MigrationStatus, PairFacts, RunState, Side};
use crate::report::RunningOn;

/// Both sides as they answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sides {
    /// The source's run state (`gone` when it could not be asked).
    pub source: RunState,
    /// The source's (outgoing) migration status.
    pub source_migration: MigrationStatus,
    /// The destination's run state.
    pub destination: RunState,
    /// The destination's (incoming) migration status.
    pub destination_migration: MigrationStatus,
}

/// What the two sides add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// The source runs the VM, no migration is under way, the destination waits: a
    /// migration can start (preflight checks the rest).
    OnSource,
    /// The destination runs the VM and the source handed it over (or is gone): the
    /// migration is done.
    Migrated,
    /// The migration completed and the destination holds the VM paused (started with
    /// `-S`), the source handed over: starting the destination finishes it.
    CompletedPaused,
    /// A migration is under way on the source.
    InProgress {
        /// Its status.
        status: MigrationStatus,
    },
    /// The source is paused (by a migration that stopped it) and the destination does
    /// not run: resuming the source brings the VM back.
    SourcePaused {
        /// The source's state.
        state: RunState,
    },
    /// The source runs, but the destination's incoming migration has already run: QEMU
    /// accepts `migrate-incoming` only once, so a new destination QEMU is needed.
    DestinationSpent {
        /// The destination's incoming status.
        status: MigrationStatus,
    },
    /// Both sides run a guest.
    BothRunning,
    /// Neither side runs the VM and nothing safe explains it.
    Unclear,
}

impl Placement {
    /// Whether only a person can say which side should run the VM.
    pub fn needs_a_person(&self) -> bool {
        matches!(self, Placement::BothRunning | Placement::Unclear)
    }
}

impl From<&PairFacts> for Sides {
    fn from(facts: &PairFacts) -> Self {
        Sides {
            source: facts.source.run_state.clone(),
            source_migration: facts.source.migration.clone(),
            destination: facts.destination.run_state.clone(),
            destination_migration: facts.destination.migration.clone(),
        }
    }
}

impl Sides {
    /// Whether the destination certainly neither runs the VM nor holds a completed
    /// migration of it: still waiting, gone, or paused without a completed incoming
    /// migration. A destination that does not answer may hold it.
    fn destination_cannot_hold_the_vm(&self) -> bool {
        match &self.destination {
            RunState::InMigrate | RunState::Gone => true,
            RunState::Paused { .. } => self.destination_migration != MigrationStatus::Completed,
            _ => false,
        }
    }

    /// Where the VM runs, as far as both sides show it.
    pub fn running_on(&self) -> RunningOn {
        match (&self.source, &self.destination, self.placement()) {
            (_, _, p) if p.needs_a_person() => RunningOn::Unknown,
            (RunState::Running, _, _) => RunningOn::Source,
            (_, RunState::Running, _) => RunningOn::Destination,
            _ => RunningOn::Unknown,
        }
    }

    /// Asks both sides. A side that cannot be asked counts as `gone`, its migration as
    /// `none`.
    pub async fn look(driver: &mut dyn Driver) -> Sides {
        let source = crate::recover::state_of(driver, Side::Source).await;
        let destination = crate::recover::state_of(driver, Side::Destination).await;
        let source_migration = driver.sample().await.map_or(MigrationStatus::None, |s| s.status);
        let destination_migration = driver
            .destination_migration()
            .await
            .unwrap_or(MigrationStatus::None);
        Sides {
            source,
            source_migration,
            destination,
            destination_migration,
        }
    }

    /// What the sides add up to.
    pub fn placement(&self) -> Placement {
        use RunState::{Gone, InMigrate, Paused, PostMigrate, Running};
        let handed_over = matches!(self.source, PostMigrate | Gone);
        match (&self.source, &self.destination) {
            (Running, Running) => Placement::BothRunning,
            (_, Running) if handed_over => Placement::Migrated,
            (_, Running) => Placement::Unclear,
            _ if self.source_migration.in_progress() => Placement::InProgress {
                status: self.source_migration.clone(),
            },
            (PostMigrate, Paused { .. }) if self.destination_migration == MigrationStatus::Completed => {
                Placement::CompletedPaused
            }
            (Running, InMigrate) if self.destination_migration.is_final() => Placement::DestinationSpent {
                status: self.destination_migration.clone(),
            },
            (Running, _) => Placement::OnSource,
            (Paused { .. } | PostMigrate, _) if self.destination_cannot_hold_the_vm() => {
                Placement::SourcePaused {
                    state: self.source.clone(),
                }
            }
            _ => Placement::Unclear,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sides(source: RunState, src_mig: &str, destination: RunState, dst_mig: &str) -> Sides {
        Sides {
            source,
            source_migration: MigrationStatus::parse(src_mig),
            destination,
            destination_migration: MigrationStatus::parse(dst_mig),
        }
    }

    fn paused(reason: &str) -> RunState {
        RunState::Paused {
            reason: reason.into(),
        }
    }

    #[test]
    fn a_fresh_pair_is_on_the_source() {
        let s = sides(RunState::Running, "none", RunState::InMigrate, "none");
        assert_eq!(s.placement(), Placement::OnSource);
    }

    #[test]
    fn a_vm_running_on_the_destination_after_handover_is_migrated() {
        let done = sides(RunState::PostMigrate, "completed", RunState::Running, "completed");
        assert_eq!(done.placement(), Placement::Migrated);
        let source_gone = sides(RunState::Gone, "none", RunState::Running, "completed");
        assert_eq!(source_gone.placement(), Placement::Migrated);
    }

    #[test]
    fn a_completed_migration_held_paused_on_the_destination_is_found() {
        let held = sides(RunState::PostMigrate, "completed", paused("paused"), "completed");
        assert_eq!(held.placement(), Placement::CompletedPaused);
    }

    #[test]
    fn a_migration_nobody_finished_is_in_progress() {
        let frozen = sides(
            paused("finish-migrate"),
            "pre-switchover",
            RunState::InMigrate,
            "active",
        );
        assert_eq!(
            frozen.placement(),
            Placement::InProgress {
                status: MigrationStatus::PreSwitchover
            }
        );
    }

    #[test]
    fn a_source_left_paused_is_found_paused() {
        let left = sides(
            paused("finish-migrate"),
            "cancelled",
            RunState::InMigrate,
            "failed",
        );
        assert_eq!(
            left.placement(),
            Placement::SourcePaused {
                state: paused("finish-migrate")
            }
        );
    }

    #[test]
    fn a_paused_source_is_not_resumed_while_the_destination_may_hold_the_vm() {
        let frozen_destination = RunState::NotAnswering { after_ms: 10_000 };
        let s = sides(RunState::PostMigrate, "completed", frozen_destination, "none");
        assert_eq!(s.placement(), Placement::Unclear);
        let loaded = sides(paused("finish-migrate"), "failed", paused("paused"), "completed");
        assert_eq!(loaded.placement(), Placement::Unclear);
    }

    #[test]
    fn a_destination_whose_incoming_migration_ran_is_spent() {
        let spent = sides(RunState::Running, "cancelled", RunState::InMigrate, "failed");
        assert_eq!(
            spent.placement(),
            Placement::DestinationSpent {
                status: MigrationStatus::Failed
            }
        );
    }

    #[test]
    fn a_destination_listening_from_its_command_line_still_waits() {
        let listening = sides(RunState::Running, "none", RunState::InMigrate, "setup");
        assert_eq!(listening.placement(), Placement::OnSource);
    }

    #[test]
    fn two_running_guests_are_for_a_person_to_judge() {
        let both = sides(RunState::Running, "none", RunState::Running, "none");
        assert_eq!(both.placement(), Placement::BothRunning);
        let unexplained = sides(paused("paused"), "none", RunState::Running, "none");
        assert_eq!(unexplained.placement(), Placement::Unclear);
        assert!(Placement::BothRunning.needs_a_person() && Placement::Unclear.needs_a_person());
    }
}
