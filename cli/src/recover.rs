//! `vfio-migrate recover PLAN`: look at both sides, repair what is safe, say what was
//! found and done. The guardian and a new run of a plan whose last run died use the same
//! repair.

use std::path::Path;

use engine::repair::{self, Repair};
use engine::ExitStatus;
use plans::Plan;
use serde::Serialize;

use crate::args::Output;
use crate::render::print_json;
use crate::state::{self, Journal, VmLock};

/// The report of a repair, with the keys Ansible reads.
#[derive(Debug, Serialize)]
pub struct RecoverReport<'a> {
    /// The plan's VM.
    pub vm: &'a str,
    /// Non-zero exit code.
    pub failed: bool,
    /// Everything the repair found and did.
    #[serde(flatten)]
    pub repair: &'a Repair,
}

/// Runs `recover` for the plan at `path`.
pub fn recover_file(path: &Path, output: Output, state_dir: Option<&Path>) -> i32 {
    let plan = match crate::load_plan(path, output) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let dir = state::state_dir(state_dir);
    let lock = match VmLock::acquire(&dir, &state::vm_keys(&plan)) {
        Ok(lock) => lock,
        Err(held) => return crate::exit::not_ready(output, &held.to_string()),
    };
    let repair = repair_now(&plan, &dir, &lock);
    show(&plan, &repair, output);
    repair.rc
}

/// Repairs the plan's VM from its journal (if an unfinished run left one) while the VM's
/// lock is held; marks the journal finished when the VM is settled.
pub fn repair_now(plan: &Plan, dir: &Path, _lock: &VmLock) -> Repair {
    let key = state::journal_key(plan);
    let unfinished = Journal::read(dir, &key).filter(|(_, record)| !record.finished);
    let journaled = unfinished
        .as_ref()
        .map(|(_, record)| record.journaled())
        .unwrap_or_default();
    let repair = block_on(async {
        let mut driver = backends::open(plan);
        if let Err(e) = driver.connect().await {
            return Err(e.to_string());
        }
        Ok(repair::repair(plan, driver.as_mut(), &journaled).await)
    });
    let repair = repair.unwrap_or_else(|e| unreachable_repair(&e));
    if let (Some((_, mut record)), 0) = (unfinished, repair.rc) {
        record.finished = true;
        record.changes.push("repaired".into());
        let _ = Journal::rewrite(dir, &key, &record);
    }
    repair
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts")
        .block_on(work)
}

/// A repair that could not even look: a person must.
fn unreachable_repair(why: &str) -> Repair {
    let unknown = engine::placement::Sides {
        source: engine::driver::RunState::Gone,
        source_migration: engine::driver::MigrationStatus::None,
        destination: engine::driver::RunState::Gone,
        destination_migration: engine::driver::MigrationStatus::None,
    };
    Repair {
        found: unknown.clone(),
        found_placement: engine::placement::Placement::Unclear,
        done: Vec::new(),
        failed_steps: vec![why.to_string()],
        now: unknown,
        placement: engine::placement::Placement::Unclear,
        running_on: engine::RunningOn::Unknown,
        changed: false,
        rc: ExitStatus::NeedsAttention.code(),
        msg: format!("a person must decide: cannot reach the hosts: {why}"),
    }
}

fn show(plan: &Plan, repair: &Repair, output: Output) {
    match output {
        Output::Human => {
            println!("{} (exit {})", repair.msg, repair.rc);
            let found = engine::preflight::Problem::Placement {
                placement: repair.found_placement.clone(),
                sides: repair.found.clone(),
            };
            println!("  found:      {found}");
            for step in &repair.done {
                println!("  done:       {step}");
            }
            for step in &repair.failed_steps {
                println!("  failed:     {step}");
            }
        }
        _ => print_json(&RecoverReport {
            vm: &plan.vm.name,
            failed: repair.rc != 0,
            repair,
        }),
    }
}
