//! # vfio-migrate (command line)
//!
//! The binary's logic, kept as a library so tests can reach the clap definitions (for
//! the generated completions and man page) and the renderers. `main.rs` only calls
//! [`run`].

pub mod args;
pub mod chart;
mod check;
#[cfg(feature = "demo")]
pub mod demo;
mod draw;
mod evacuate;
pub mod exit;
pub mod generate;
mod guarded;
mod guardian;
pub mod notify;
mod recover;
pub mod render;
mod signals;
pub mod state;

use std::path::Path;

use args::{Cli, Command, Output, ReportFiles};
use plans::Plan;
use render::Renderer;

/// Runs the command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let output = cli.output;
    let state_dir = cli.state_dir.as_deref();
    let top = files(&cli.report_files, None);
    let draws_a_run = matches!(
        cli.command,
        None | Some(Command::Migrate { .. }) | Some(Command::Demo { .. })
    );
    if !top.is_empty() && !draws_a_run {
        return exit::usage(
            output,
            "--report-html and --report-svg draw a run's report: give them with `vfio-migrate PLAN` or `vfio-migrate migrate PLAN` (`vfio-migrate report FILE.json --html OUT` draws a saved one)",
        );
    }
    match (cli.command, cli.plan) {
        (Some(Command::Migrate { plan, report_files }), _) => {
            let charts = files(&report_files, Some(&top));
            migrate_file(&plan, output, cli.quiet, state_dir, &charts, &cli.notify)
        }
        (None, Some(plan)) => migrate_file(&plan, output, cli.quiet, state_dir, &top, &cli.notify),
        (Some(Command::Report { json, html, svg }), _) => {
            draw::run(&json, &chart::Files { html, svg }, output)
        }
        (
            Some(Command::Run {
                plans,
                parallel,
                bandwidth_budget,
                fail_fast,
                order,
            }),
            _,
        ) => evacuate::run(evacuate::Request {
            plans,
            parallel: usize::from(parallel),
            budget: bandwidth_budget.map(|r| r.bytes_per_sec()),
            fail_fast,
            order,
            output,
            quiet: cli.quiet,
            state_dir: cli.state_dir.clone(),
            notify: cli.notify.clone(),
        }),
        (Some(Command::Recover { plan }), _) => recover::recover_file(&plan, output, state_dir),
        (Some(Command::Guard { plan }), _) => guardian::watch(&plan, &state::state_dir(state_dir)),
        (Some(Command::Validate { plan }), _) => validate_file(&plan, output),
        (
            Some(Command::Check {
                plan,
                host,
                side,
                sysfs_root,
                no_measure,
            }),
            _,
        ) => check::run(check::Request {
            plan: plan.filter(|_| !host),
            side,
            root: sysfs_root.unwrap_or_else(|| "/".into()),
            measure: !no_measure,
            output,
        }),
        (Some(Command::Schema), _) => {
            println!("{}", plans::schema::plan_schema_json());
            0
        }
        #[cfg(feature = "demo")]
        (
            Some(Command::Demo {
                scenario,
                keep,
                no_devices,
                sim,
                libvirt,
                report_files,
            }),
            _,
        ) => demo::run(
            scenario,
            keep.as_deref(),
            !no_devices,
            match (sim, libvirt) {
                (true, _) => demo::Pair::Simulated,
                (false, true) => demo::Pair::Libvirt,
                (false, false) => demo::Pair::Qemu,
            },
            &files(&report_files, Some(&top)),
            output,
            cli.quiet,
        ),
        // Declared in every build so `--help`, the man page and the completions do not
        // depend on features; a build without the demo says how to get one.
        #[cfg(not(feature = "demo"))]
        (Some(Command::Demo { .. }), _) => exit::usage(output, exit::NO_DEMO),
        (Some(Command::Completions { shell }), _) => {
            generate::completions(shell, &mut std::io::stdout());
            0
        }
        (None, None) => exit::usage(
            output,
            "no plan given: try `vfio-migrate PLAN.toml`, or `vfio-migrate demo`",
        ),
    }
}

/// The drawings asked for: the subcommand's options, else those before it.
fn files(asked: &ReportFiles, before: Option<&chart::Files>) -> chart::Files {
    chart::Files {
        html: asked
            .report_html
            .clone()
            .or_else(|| before.and_then(|b| b.html.clone())),
        svg: asked
            .report_svg
            .clone()
            .or_else(|| before.and_then(|b| b.svg.clone())),
    }
}

/// Reads and checks a plan file; on failure prints the mistakes and returns exit code 2.
/// A file that cannot be a plan (unreadable, a directory, too large, not UTF-8, empty)
/// is one of those mistakes.
pub fn load_plan(path: &Path, output: Output) -> Result<Plan, i32> {
    plans::load_file(path).map_err(|errors| {
        if output == Output::Human {
            eprintln!("{errors}");
        }
        exit::invalid(output, &errors.summary(), &errors.located())
    })
}

fn validate_file(path: &Path, output: Output) -> i32 {
    match load_plan(path, output) {
        Ok(plan) => {
            match output {
                Output::Human => {
                    println!("{}: valid plan for VM {:?}", path.display(), plan.vm.name)
                }
                _ => render::print_json(&serde_json::json!({
                    "failed": false, "changed": false, "rc": 0, "valid": true,
                    "msg": "valid plan", "errors": [], "plan": plan,
                })),
            }
            0
        }
        Err(code) => code,
    }
}

fn migrate_file(
    path: &Path,
    output: Output,
    quiet: bool,
    state_dir: Option<&Path>,
    charts: &chart::Files,
    webhooks: &args::NotifyArgs,
) -> i32 {
    match load_plan(path, output) {
        Ok(mut plan) => {
            if let Err(msg) = notify::run::add_command_line(&mut plan, webhooks) {
                return exit::usage(output, msg);
            }
            migrate_guarded(&plan, path, output, quiet, state_dir, charts)
        }
        Err(code) => code,
    }
}

/// Migrates the plan read from `path` with the backend it names, safely against this
/// tool dying: the VM's lock is held, a journal is kept, a guardian watches, and what a
/// previous run that died left behind is repaired first (see [`guarded`]). Returns the
/// exit code.
pub fn migrate_guarded(
    plan: &Plan,
    path: &Path,
    output: Output,
    quiet: bool,
    state_dir: Option<&Path>,
    charts: &chart::Files,
) -> i32 {
    let dir = state::state_dir(state_dir);
    let mut guarded = match guarded::Guarded::begin(plan, path, &dir, quiet) {
        Ok(guarded) => guarded,
        Err(guarded::Refusal::NotReady(msg)) => return exit::not_ready(output, &msg),
        Err(guarded::Refusal::NeedsAttention(msg)) => return exit::needs_attention(output, &msg),
    };
    guarded.watch(path, &dir);
    let mut driver = backends::open(plan);
    let rc = migrate_with(
        plan,
        driver.as_mut(),
        output,
        quiet,
        Some(guarded.journal()),
        charts,
    );
    guarded.end(rc);
    rc
}

/// Migrates a loaded plan with any driver (a backend, or the simulator for the demo),
/// and draws the report into `charts` afterwards.
pub fn migrate_with(
    plan: &Plan,
    driver: &mut dyn engine::Driver,
    output: Output,
    quiet: bool,
    journal: Option<&mut state::Journal>,
    charts: &chart::Files,
) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        // Nothing was contacted yet, but the exit code keeps its old meaning (4) and, with
        // JSON output, the answer keeps its keys.
        Err(e) => return exit::needs_attention(output, &format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let interrupt = signals::watch_interrupts();
        // Webhooks that cannot be delivered as asked (no key, no CA) stop the run here,
        // before the migration starts.
        let webhooks = match notify::run::start(plan) {
            Ok(webhooks) => webhooks,
            Err(e) => return notify::run::refuse(output, &e),
        };
        let mut renderer = Renderer::new(output, quiet);
        let mut report = match journal {
            Some(journal) => {
                let mut sink = state::JournalSink::new(&mut renderer, journal);
                notify::run::migrate(plan, driver, &mut sink, interrupt.into(), webhooks.as_ref()).await
            }
            None => {
                notify::run::migrate(plan, driver, &mut renderer, interrupt.into(), webhooks.as_ref()).await
            }
        };
        notify::run::finish(webhooks, &mut report).await;
        renderer.finish(output, &report);
        charts.write_for_run(&report, quiet);
        report.rc
    })
}
