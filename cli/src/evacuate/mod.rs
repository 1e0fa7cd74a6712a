//! `vfio-migrate run PLAN... --parallel N --bandwidth-budget RATE`: many VMs in one run,
//! as when a host is emptied before its maintenance window.
//!
//! Every plan is read and every VM locked, repaired and journaled before anything
//! starts, so a mistake in the tenth plan or a VM another run holds stops the run while
//! nothing has changed. Then [`schedule`] runs the migrations side by side, [`board`]
//! shows them, and one report sums them up (`engine::evacuation::report`).

mod board;
mod inputs;
mod order;
mod schedule;

use std::path::PathBuf;
use std::time::Instant;

use engine::evacuation::budget::MIN_SHARE;
use engine::evacuation::report::EvacuationReport;
use serde::Serialize;

use crate::args::{NotifyArgs, Order, Output};
use crate::guarded::{Guarded, Refusal};
use crate::notify::{self, Notifier};
use crate::render::print_json;
use crate::{exit, signals, state};

/// What `vfio-migrate run` was asked.
#[derive(Debug)]
pub struct Request {
    /// Plan files and directories.
    pub plans: Vec<PathBuf>,
    /// Migrations at once.
    pub parallel: usize,
    /// The shared bandwidth, bytes/s.
    pub budget: Option<u64>,
    /// Stop starting after a VM that did not migrate.
    pub fail_fast: bool,
    /// The order in which VMs start.
    pub order: Order,
    /// Output mode.
    pub output: Output,
    /// No progress display.
    pub quiet: bool,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--notify` and `--notify-secret-env`, for every VM.
    pub notify: NotifyArgs,
}

/// Runs the evacuation; returns the exit code.
pub fn run(request: Request) -> i32 {
    let output = request.output;
    let files = match inputs::plan_files(&request.plans) {
        Ok(files) => files,
        Err(msg) => return exit::usage(output, &msg),
    };
    if let Some(budget) = request.budget {
        let least = MIN_SHARE * request.parallel as u64;
        if budget < least {
            return exit::usage(
                output,
                &format!(
                    "--bandwidth-budget must give each of the {} parallel migrations at least 1 MiB/s",
                    request.parallel
                ),
            );
        }
    }
    let mut plans = Vec::with_capacity(files.len());
    for file in &files {
        match crate::load_plan(file, output) {
            Ok(mut plan) => {
                if let Err(msg) = notify::run::add_command_line(&mut plan, &request.notify) {
                    return exit::usage(output, msg);
                }
                plans.push(plan)
            }
            Err(code) => return code,
        }
    }
    let dir = state::state_dir(request.state_dir.as_deref());
    let mut vms = Vec::with_capacity(plans.len());
    for (path, plan) in files.iter().zip(&plans) {
        match Guarded::begin(plan, path, &dir, request.quiet) {
            Ok(guarded) => vms.push(schedule::Vm {
                path: path.clone(),
                plan: plan.clone(),
                guarded,
                webhooks: None,
            }),
            Err(Refusal::NotReady(msg)) => {
                return exit::not_ready(output, &format!("{}: {msg}; nothing was started", path.display()))
            }
            Err(Refusal::NeedsAttention(msg)) => {
                return exit::needs_attention(
                    output,
                    &format!("{}: {msg}; nothing was started", path.display()),
                )
            }
        }
    }
    // Webhooks that cannot be delivered as asked stop the run before anything starts.
    let webhooks = match webhooks_of(&plans) {
        Ok(webhooks) => webhooks,
        Err(e) => return notify::run::refuse(output, &e),
    };
    for (vm, plan) in vms.iter_mut().zip(&plans) {
        vm.webhooks = webhooks.handle_for(plan);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return exit::needs_attention(output, &format!("cannot start the async runtime: {e}")),
    };
    let options = schedule::Options {
        parallel: request.parallel,
        budget: request.budget,
        fail_fast: request.fail_fast,
    };
    let names = plans.iter().map(|p| p.vm.name.clone()).collect();
    let board = board::Board::new(names, output, request.quiet);
    let report = runtime.block_on(async {
        let interrupt = signals::watch_interrupts();
        let order = match request.order {
            Order::Plan => (0..plans.len()).collect(),
            Order::ShortestFirst => order::shortest_first(&plans).await,
        };
        let started = Instant::now();
        let (entries, interrupted) =
            schedule::evacuate(vms, order, options, &dir, board.clone(), interrupt).await;
        let mut report = EvacuationReport::new(entries, started.elapsed().as_millis() as u64, interrupted);
        report.notify = webhooks.finish().await;
        report
    });
    board
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    print_report(output, &report);
    report.rc
}

/// The evacuation's webhooks: one notifier for each distinct `[notify]` among the plans
/// (the command line's `--notify` is in every plan by now), shared by their VMs.
struct Webhooks(Vec<(plans::Notify, Notifier)>);

impl Webhooks {
    /// The handle the VM of `plan` sends its events with.
    fn handle_for(&self, plan: &plans::Plan) -> Option<notify::NotifyHandle> {
        let wanted = plan.notify.as_ref()?;
        self.0
            .iter()
            .find(|(notify, _)| notify == wanted)
            .map(|(_, notifier)| notifier.handle())
    }

    /// Waits for what every notifier owes; the counts added up (`None` without webhooks).
    async fn finish(self) -> Option<engine::report::NotifyCounts> {
        let mut total: Option<engine::report::NotifyCounts> = None;
        let finishing: Vec<_> = self.0.into_iter().map(|(_, n)| n.finish()).collect();
        for counts in futures_join_all(finishing).await {
            let sum = total.get_or_insert_with(Default::default);
            sum.sent += counts.sent;
            sum.failed += counts.failed;
            sum.dropped += counts.dropped;
        }
        total
    }
}

/// Awaits every future side by side (each notifier waits for its own receivers).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(output) = task.await {
            outputs.push(output);
        }
    }
    outputs
}

/// Starts one notifier per distinct `[notify]` of `plans`.
fn webhooks_of(plans: &[plans::Plan]) -> Result<Webhooks, notify::NotifyError> {
    let mut started: Vec<(plans::Notify, Notifier)> = Vec::new();
    for notify in plans.iter().filter_map(|p| p.notify.as_ref()) {
        if started.iter().any(|(n, _)| n == notify) {
            continue;
        }
        let notifier = Notifier::start(notify::Targets::resolve(notify)?)?;
        started.push((notify.clone(), notifier));
    }
    Ok(Webhooks(started))
}

#[derive(Serialize)]
struct Tagged<'a> {
    event: &'static str,
    #[serde(flatten)]
    report: &'a EvacuationReport,
}

fn print_report(output: Output, report: &EvacuationReport) {
    match output {
        Output::Human => println!("{}", text(report)),
        Output::Json => print_json(report),
        Output::Ndjson => print_json(&Tagged {
            event: "report",
            report,
        }),
    }
}

/// The report for people: one line per VM, then the summary.
fn text(report: &EvacuationReport) -> String {
    use engine::evacuation::report::VmEntry;
    let mut out = String::new();
    for vm in &report.vms {
        let line = match vm {
            VmEntry::Ran { report: r, .. } => format!(
                "{:<16} {:<11} on {:<11} in {:>7}, pause {:>6}: {}",
                r.vm,
                crate::render::human::outcome_word(r.result),
                running_on_word(r.running_on),
                crate::render::human::ms_text(r.total_ms),
                r.paused_ms.map_or("-".into(), crate::render::human::ms_text),
                r.msg
            ),
            VmEntry::NoReport {
                vm,
                result,
                running_on,
                msg,
                ..
            } => format!(
                "{vm:<16} {result:<11} on {:<11}: {msg}",
                running_on_word(*running_on)
            ),
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let s = &report.summary;
    out.push_str(&format!(
        "{} in {}, {} sent{}",
        report.msg,
        crate::render::human::ms_text(s.wall_ms),
        plans::units::format_bytes(s.transferred_bytes),
        s.max_paused_ms
            .map(|p| format!(", longest pause {}", crate::render::human::ms_text(p)))
            .unwrap_or_default()
    ));
    out
}

fn running_on_word(on: engine::RunningOn) -> &'static str {
    match on {
        engine::RunningOn::Source => "source",
        engine::RunningOn::Destination => "destination",
        engine::RunningOn::Unknown => "unknown",
    }
}
