//! Many VMs in one run, as when a host is emptied before its maintenance window: what
//! the run decides without touching a host, kept pure so its tests never start QEMU.
//!
//! - [`budget`]: how one bandwidth budget is divided among the migrations that run,
//!   so that the link is never oversubscribed and never idle while work remains;
//! - [`report`]: the evacuation's report, every VM's own report inside, a summary,
//!   the keys Ansible reads and the exit code (the worst of the VMs').
//!
//! Running the VMs (locks, journals, guardians, progress) is the command line's job
//! (`cli/src/evacuate/`); each VM's migration is [`crate::migrate`] with its own plan,
//! policy and gate, and a [`crate::controls::BandwidthShare`].

pub mod budget;
pub mod report;
