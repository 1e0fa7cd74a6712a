//! Runs the VMs of an evacuation: at most `parallel` migrations at once, in the order
//! given, each under its own plan, with a share of the bandwidth budget that is divided
//! again whenever one starts or ends.
//!
//! Before a migration starts, the running ones are asked to lower their shares and the
//! start waits until they have (or have ended), so the caps in force never add up to
//! more than the budget. When one ends, the others' shares only grow, so they are raised
//! at once. `--fail-fast` stops starting after a VM that did not migrate; an interrupt
//! stops starting and reaches every running migration, which cancels and leaves its VM
//! on the source.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use engine::controls::{self, ShareHandle};
use engine::evacuation::budget;
use engine::evacuation::report::VmEntry;
use engine::{Controls, Report};
use plans::Plan;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::board::{Board, VmSink};
use crate::guarded::Guarded;
use crate::notify::{NotifyHandle, NotifySink};
use crate::render::human::outcome_word;
use crate::state::JournalSink;

/// How long a running migration may take to lower its share before the next one starts
/// anyway (a migration held at `pre-switchover`, or in QEMU's final stage, which is not
/// rate-limited, answers once it is through).
const SHARE_PATIENCE: Duration = Duration::from_secs(10);

/// A VM ready to be migrated: its plan, locked, repaired and journaled.
pub struct Vm {
    /// The plan file.
    pub path: PathBuf,
    /// The plan.
    pub plan: Plan,
    /// Its lock and journal.
    pub guarded: Guarded,
    /// Where its webhooks go, when its plan has any.
    pub webhooks: Option<NotifyHandle>,
}

/// What the operator asked of the run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Migrations at once.
    pub parallel: usize,
    /// The bandwidth budget, bytes/s.
    pub budget: Option<u64>,
    /// Start nothing after a VM that did not migrate.
    pub fail_fast: bool,
}

/// A migration under way.
struct Running {
    index: usize,
    cap: Option<u64>,
    share: Option<ShareHandle>,
}

/// Migrates `vms` in `order` (indices into `vms`); returns every VM's entry in plan
/// order and whether the operator interrupted.
pub async fn evacuate(
    vms: Vec<Vm>,
    order: Vec<usize>,
    options: Options,
    dir: &Path,
    board: Arc<Mutex<Board>>,
    mut interrupt: watch::Receiver<bool>,
) -> (Vec<VmEntry>, bool) {
    let names: Vec<(PathBuf, String)> = vms
        .iter()
        .map(|vm| (vm.path.clone(), vm.plan.vm.name.clone()))
        .collect();
    let mut waiting: Vec<Option<Vm>> = vms.into_iter().map(Some).collect();
    let mut queue: VecDeque<usize> = order.into();
    let mut entries: Vec<Option<VmEntry>> = names.iter().map(|_| None).collect();
    let mut running: Vec<Running> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut task_of = HashMap::new();
    let mut stop: Option<String> = None;
    let began = Instant::now();
    loop {
        while stop.is_none() && running.len() < options.parallel {
            let Some(index) = queue.pop_front() else { break };
            let Some(vm) = waiting[index].take() else { continue };
            let cap = vm.plan.limits.max_bandwidth.map(|r| r.bytes_per_sec());
            let (share, bandwidth) = match options.budget {
                Some(budget) => {
                    let part = make_room(&mut running, cap, budget, &board).await;
                    let (holder, share) = controls::share(part);
                    (Some(holder), Some(share))
                }
                None => (None, None),
            };
            // An interrupt that came while the others lowered their shares: this VM is
            // not started after all, and the others get its part back.
            if *interrupt.borrow() {
                waiting[index] = Some(vm);
                stop = Some("not started: the run was interrupted".into());
                if let Some(budget) = options.budget {
                    spread(&running, budget);
                }
                break;
            }
            running.push(Running { index, cap, share });
            lock(&board).started(index);
            let controls = Controls {
                interrupt: interrupt.clone(),
                bandwidth,
            };
            let task = tasks.spawn(migrate_one(
                vm,
                index,
                dir.to_path_buf(),
                controls,
                board.clone(),
                began,
            ));
            task_of.insert(task.id(), index);
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            done = tasks.join_next() => {
                let Some(done) = done else { break };
                let (index, entry) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        // Its lock and journal went with the task, and its guardian
                        // saw the pipe close: the guardian repairs, or the next run.
                        let Some(&index) = task_of.get(&e.id()) else { break };
                        let (path, name) = names[index].clone();
                        let what = format!("its run ended without a report ({e}); its guardian repairs, or run `vfio-migrate recover {}`", path.display());
                        (index, VmEntry::lost(path, name, what))
                    }
                };
                running.retain(|r| r.index != index);
                let rc = entry.rc().unwrap_or(0);
                let word = entry.report().map_or("unknown", |r| outcome_word(r.result));
                lock(&board).ended(index, word);
                if options.fail_fast && rc != 0 && stop.is_none() {
                    stop = Some(format!("not started: --fail-fast after {} did not migrate", names[index].1));
                }
                entries[index] = Some(entry);
                if let Some(budget) = options.budget {
                    spread(&running, budget);
                }
            }
            changed = interrupt.changed(), if stop.is_none() => {
                if changed.is_err() || *interrupt.borrow() {
                    stop = Some("not started: the run was interrupted".into());
                }
            }
        }
    }
    let interrupted = *interrupt.borrow();
    let why = stop.unwrap_or_else(|| "not started".into());
    let entries = entries
        .into_iter()
        .zip(names)
        .zip(waiting)
        .map(|((entry, (path, name)), left)| match (entry, left) {
            (Some(entry), _) => entry,
            (None, Some(vm)) => {
                // Never started: its journal says so, with nothing to undo.
                vm.guarded.end(engine::ExitStatus::NotMigrated.code());
                VmEntry::not_started(path, name, why.clone())
            }
            (None, None) => VmEntry::lost(path, name, "its run ended without a report".into()),
        })
        .collect();
    (entries, interrupted)
}

/// Asks the running migrations to give up what a newcomer with `cap` is owed, waits
/// until they have, and returns the newcomer's part.
async fn make_room(running: &mut [Running], cap: Option<u64>, budget: u64, board: &Arc<Mutex<Board>>) -> u64 {
    let mut caps: Vec<Option<u64>> = running.iter().map(|r| r.cap).collect();
    caps.push(cap);
    let parts = budget::divide(budget, &caps);
    for (r, part) in running.iter().zip(&parts) {
        if let Some(share) = &r.share {
            share.set(*part);
        }
    }
    for r in running.iter_mut() {
        if let Some(share) = r.share.as_mut() {
            if !share.settled(SHARE_PATIENCE).await {
                board_say(
                    board,
                    &format!(
                        "a running migration has not lowered its bandwidth share within {}s; starting the next one anyway",
                        SHARE_PATIENCE.as_secs()
                    ),
                );
            }
        }
    }
    parts.last().copied().unwrap_or(budget)
}

/// Divides the budget among the migrations still running (their parts only grow).
fn spread(running: &[Running], budget: u64) {
    let caps: Vec<Option<u64>> = running.iter().map(|r| r.cap).collect();
    for (r, part) in running.iter().zip(budget::divide(budget, &caps)) {
        if let Some(share) = &r.share {
            share.set(part);
        }
    }
}

/// One VM's migration, as `vfio-migrate PLAN` runs it: guardian, backend, engine,
/// journal.
async fn migrate_one(
    vm: Vm,
    index: usize,
    dir: PathBuf,
    controls: Controls,
    board: Arc<Mutex<Board>>,
    began: Instant,
) -> (usize, VmEntry) {
    let started_ms = began.elapsed().as_millis() as u64;
    let Vm {
        path,
        plan,
        mut guarded,
        webhooks,
    } = vm;
    guarded.watch(&path, &dir);
    let mut driver = backends::open(&plan);
    let mut shown = VmSink::new(board, index);
    let report: Report = {
        let mut sink = JournalSink::new(&mut shown, guarded.journal());
        match &webhooks {
            Some(handle) => {
                let mut sink = NotifySink::new(&mut sink, handle.clone(), &plan);
                let report = engine::migrate(&plan, driver.as_mut(), &mut sink, controls).await;
                handle.result(&report);
                report
            }
            None => engine::migrate(&plan, driver.as_mut(), &mut sink, controls).await,
        }
    };
    let rc = report.rc;
    // The guardian's goodbye waits for its process to exit.
    let _ = tokio::task::spawn_blocking(move || guarded.end(rc)).await;
    (
        index,
        VmEntry::Ran {
            plan: path,
            started_ms,
            ended_ms: began.elapsed().as_millis() as u64,
            report: Box::new(report),
        },
    )
}

fn lock(board: &Arc<Mutex<Board>>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(PoisonError::into_inner)
}

fn board_say(board: &Arc<Mutex<Board>>, line: &str) {
    lock(board).say(line);
}
