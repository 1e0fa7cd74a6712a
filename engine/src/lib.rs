//! # vfio-migrate engine
//!
//! Reads top to bottom the way a migration goes:
//!
//! 1. [`preflight`] — checks that change nothing: both sides answer, the source runs,
//!    the destination waits, QEMU reports no blocker, the backend can do what the plan
//!    needs. Typed [`preflight::Problem`]s when not.
//! 2. [`run`] — the phase script: prepare, configure, listen, migrate, converge,
//!    switchover, verify; or recover after an abort or failure.
//! 3. [`gate`] — no decision on dirty data until every VFIO device is saving; a device
//!    that misbehaves stops the migration.
//! 4. [`converge`] — the loop that samples statistics and the kernel's dirty rate and
//!    records each dirty-sync boundary.
//! 5. [`policy`] — a pure function from those boundaries to a decision: continue,
//!    throttle, force downtime, or abort; [`estimate`] is the one downtime arithmetic
//!    it and the progress display share; [`sizing`] computes a throttle from the
//!    measured dirty rate and bandwidth.
//! 6. [`report`] — the final record; [`outcome::Reason`] says why, typed, and
//!    [`exit`] maps it to the documented exit code.
//!
//! Many VMs in one run (a host emptied) are many such runs side by side, each with its
//! [`controls::Controls`]; [`evacuation`] divides the bandwidth budget among them and
//! sums them up.
//!
//! The engine drives a [`driver::Driver`] (QMP, libvirt, the simulator) and asks it
//! for optional capabilities; it tells the outside world what happens through
//! [`events::EventSink`] and never prints. Every sentence it says about why lives in
//! `words.rs`.

pub mod check;
pub mod controls;
pub mod converge;
pub mod driver;
pub mod estimate;
pub mod evacuation;
pub mod events;
pub mod exit;
pub mod gate;
pub mod outcome;
pub mod phase;
pub mod placement;
pub mod policy;
pub mod preflight;
mod recover;
pub mod repair;
pub mod report;
pub mod run;
pub mod samples;
pub mod sizing;
mod state;
mod verify;
mod words;

pub use controls::Controls;
pub use driver::{Capabilities, Driver, DriverError, Side};
pub use events::{EngineEvent, EventSink};
pub use exit::ExitStatus;
pub use outcome::{Outcome, Reason};
pub use report::{Report, RunningOn};
pub use run::migrate;
