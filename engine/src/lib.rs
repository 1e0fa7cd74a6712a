//! # vfio-migrate engine
//!
//! Reads top to bottom the way a migration goes:
//!
//! 1. [`preflight`] — checks that change nothing: both sides answer, the source runs,
//!    the destination waits, QEMU reports no blocker.
//! 2. [`run`] — the phase script: listen, configure, migrate, converge, switchover,
//!    verify; or recover after an abort or failure.
//! 3. [`gate`] — no decision on dirty data until every VFIO device is saving; a device
//!    that misbehaves stops the migration.
//! 4. [`converge`] — the loop that samples statistics and the kernel's dirty rate and
//!    records each dirty-sync boundary.
//! 5. [`policy`] — a pure function from those boundaries to a decision: continue,
//!    throttle, force downtime, or abort.
//! 6. [`report`] — the final record and its exit code.
//!
//! The engine drives a [`driver::Driver`] (QMP, libvirt, simulator) and tells the outside
//! world what happens through [`events::EventSink`]; it never prints.

pub mod converge;
pub mod driver;
pub mod events;
pub mod gate;
pub mod phase;
pub mod policy;
pub mod preflight;
mod recover;
pub mod report;
pub mod run;
mod verify;

pub use driver::{Driver, DriverError, Side};
pub use events::{EngineEvent, EventSink};
pub use report::{ExitStatus, Outcome, Report, RunningOn};
pub use run::migrate;
