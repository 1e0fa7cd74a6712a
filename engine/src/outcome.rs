//! How a run ended, typed from the moment it is known to the report: the engine and its
//! tests match on [`Reason`]; people read it through its `Display` (`words.rs`).

use serde::Serialize;

use crate::driver::DriverError;
use crate::gate::GateViolation;
use crate::policy::AbortReason;
use crate::preflight::Problem;

/// How the migration part of a run ended, before verification or recovery.
#[derive(Debug)]
pub(crate) enum Ending {
    /// QEMU reports the migration completed: verify and hand over.
    Completed,
    /// It did not complete: recover, for this reason.
    Stopped(Reason),
}

/// Why the VM did not move (or could not be confirmed to have moved).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// Preflight found the hosts not ready; nothing was changed.
    NotReady {
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The policy cancelled the migration.
    Policy {
        /// The pass at which it decided, when one had been measured.
        pass: Option<u64>,
        /// Why.
        abort: AbortReason,
    },
    /// A VFIO device did not behave as a migration needs.
    Device {
        /// What it did.
        violation: GateViolation,
    },
    /// The operator interrupted the run.
    Interrupted,
    /// A request to a side failed.
    Driver {
        /// What failed.
        error: DriverError,
    },
    /// Continuing at `pre-switchover` failed.
    ContinueFailed {
        /// What failed.
        error: DriverError,
    },
    /// QEMU reports the migration failed.
    MigrationFailed {
        /// Whether it failed after the guest was stopped for switchover.
        during_switchover: bool,
        /// QEMU's `error-desc`, when it gave one.
        qemu_error: Option<String>,
    },
    /// Someone else cancelled the migration.
    CancelledElsewhere,
    /// The connection to both hypervisors' event streams closed.
    EventsClosed,
    /// A side's connection was lost.
    ConnectionLost {
        /// Which side, in words.
        side: crate::driver::Side,
        /// Why, as the backend said it.
        why: String,
    },
    /// After switchover the migration did not complete in time.
    SwitchoverTimedOut,
    /// QEMU reported completion, but the destination could not be confirmed running.
    NotConfirmed,
}

/// How the run ended, as the report says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The VM runs on the destination.
    Migrated,
    /// The policy (or the operator) cancelled it; the VM runs on the source.
    Aborted,
    /// The migration failed; see `error` and `running_on`.
    Failed,
}

impl Reason {
    /// A request that failed: a lost connection when the side's connection is gone (the
    /// same reason as the event that says so, whichever arrives first), else the failure.
    pub(crate) fn failed_request(error: DriverError) -> Reason {
        match error.disconnected {
            true => Reason::ConnectionLost {
                side: error.side,
                why: error.message,
            },
            false => Reason::Driver { error },
        }
    }

    /// The outcome this reason stands for: a decision (policy, gate, operator) aborts,
    /// anything else is a failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            Reason::Policy { .. } | Reason::Device { .. } | Reason::Interrupted => Outcome::Aborted,
            _ => Outcome::Failed,
        }
    }
}
