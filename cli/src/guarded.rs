//! What keeps one VM's run safe against this tool dying, in the order a run takes it:
//! the VM's lock (one run per VM), the repair of what a previous run that died left
//! behind, the journal (what this run changes), and the guardian process that repairs
//! if this one dies. A single plan's run and every VM of an evacuation go through here.

use std::path::Path;

use plans::Plan;

use crate::guardian::Guardian;
use crate::state::{self, Journal, VmLock};

/// Why a VM cannot be started safely; nothing was changed.
#[derive(Debug)]
pub enum Refusal {
    /// Another run holds the VM, or the state directory cannot be used: exit 3.
    NotReady(String),
    /// A previous run died and its repair did not settle the VM: exit 4.
    NeedsAttention(String),
}

/// A VM that is locked, repaired and journaled; its guardian starts with [`Guarded::watch`].
pub struct Guarded {
    _lock: VmLock,
    journal: Journal,
    guardian: Option<Guardian>,
}

impl Guarded {
    /// Locks the plan's VM, repairs what a previous run of it that died left, and starts
    /// its journal. `quiet` keeps the repair's words off stderr.
    pub fn begin(plan: &Plan, path: &Path, dir: &Path, quiet: bool) -> Result<Guarded, Refusal> {
        let lock = VmLock::acquire(dir, &state::vm_keys(plan))
            .map_err(|held| Refusal::NotReady(held.to_string()))?;
        let key = state::journal_key(plan);
        if Journal::read(dir, &key).is_some_and(|(_, record)| !record.finished) {
            let repair = crate::recover::repair_now(plan, dir, &lock);
            if repair.rc != 0 {
                return Err(Refusal::NeedsAttention(format!(
                    "a previous run of this plan died; {}",
                    repair.msg
                )));
            }
            if repair.changed && !quiet {
                eprintln!(
                    "vfio-migrate: a previous run of {} died; repaired: {}",
                    plan.vm.name,
                    repair.done.join("; ")
                );
            }
        }
        let journal = Journal::start(dir, &key, &plan.vm.name, path).map_err(|e| {
            Refusal::NotReady(format!(
                "cannot keep a journal under {}: {e} (choose another with --state-dir)",
                dir.display()
            ))
        })?;
        Ok(Guarded {
            _lock: lock,
            journal,
            guardian: None,
        })
    }

    /// Starts the guardian that repairs the VM if this process dies from now on; a
    /// guardian that cannot start is a warning (`vfio-migrate recover` remains).
    pub fn watch(&mut self, path: &Path, dir: &Path) {
        match Guardian::spawn(path, dir) {
            Ok(guardian) => self.guardian = Some(guardian),
            Err(e) => eprintln!(
                "vfio-migrate: warning: no guardian for the run of {} ({e}); if it dies, run `vfio-migrate recover`",
                path.display()
            ),
        }
    }

    /// The run's journal.
    pub fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// The run ended with `rc`: the journal says so, the guardian stands down, the lock
    /// goes.
    pub fn end(mut self, rc: i32) {
        if let Err(e) = self.journal.finish(rc) {
            eprintln!(
                "vfio-migrate: warning: cannot mark the journal {} finished: {e}",
                self.journal.path().display()
            );
        }
        if let Some(guardian) = self.guardian.take() {
            guardian.stand_down();
        }
    }
}
