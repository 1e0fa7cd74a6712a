//! # vfio-migrate (command line)
//!
//! The binary's logic, kept as a library so tests can reach the clap definitions (for
//! the generated completions and man page) and the renderers. `main.rs` only calls
//! [`run`].

pub mod args;
#[cfg(feature = "demo")]
pub mod demo;
pub mod exit;
pub mod generate;
pub mod render;
mod signals;

use std::path::Path;

use args::{Cli, Command, Output};
use engine::report::ExitStatus;
use plans::Plan;
use render::Renderer;

/// Runs the command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let output = cli.output;
    match (cli.command, cli.plan) {
        (Some(Command::Migrate { plan }), _) | (None, Some(plan)) => migrate_file(&plan, output, cli.quiet),
        (Some(Command::Validate { plan }), _) => validate_file(&plan, output),
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
            }),
            _,
        ) => demo::run(scenario, keep.as_deref(), !no_devices, sim, output, cli.quiet),
        // Declared in every build so `--help`, the man page and the completions do not
        // depend on features; a build without the demo says how to get one.
        #[cfg(not(feature = "demo"))]
        (Some(Command::Demo { .. }), _) => exit::usage(exit::NO_DEMO),
        (Some(Command::Completions { shell }), _) => {
            generate::completions(shell, &mut std::io::stdout());
            0
        }
        (None, None) => exit::usage("no plan given: try `vfio-migrate PLAN.toml`, or `vfio-migrate demo`"),
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

fn migrate_file(path: &Path, output: Output, quiet: bool) -> i32 {
    match load_plan(path, output) {
        Ok(plan) => migrate_plan(&plan, output, quiet),
        Err(code) => code,
    }
}

/// Migrates a loaded plan with the backend it names and renders the run; returns the
/// exit code.
pub fn migrate_plan(plan: &Plan, output: Output, quiet: bool) -> i32 {
    migrate_with(plan, backends::open(plan).as_mut(), output, quiet)
}

/// Migrates a loaded plan with any driver (a backend, or the simulator for the demo).
pub fn migrate_with(plan: &Plan, driver: &mut dyn engine::Driver, output: Output, quiet: bool) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vfio-migrate: cannot start the async runtime: {e}");
            return ExitStatus::NeedsAttention.code();
        }
    };
    runtime.block_on(async {
        let interrupt = signals::watch_interrupts();
        let mut renderer = Renderer::new(output, quiet);
        let report = engine::migrate(plan, driver, &mut renderer, interrupt).await;
        renderer.finish(output, &report);
        report.rc
    })
}
