//! The command line, declared once: `--help`, the man page and the shell completions
//! are all generated from these definitions.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use engine::ExitStatus;
use plans::units::Rate;

/// Live-migrate a QEMU/KVM VM that owns VFIO devices, as a TOML plan describes.
#[derive(Debug, Parser)]
#[command(
    name = "vfio-migrate",
    version,
    about,
    after_help = ExitStatus::help_table(),
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// The plan to carry out (same as `vfio-migrate migrate PLAN`).
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// How results are written to stdout.
    #[arg(long, short, value_enum, global = true, default_value_t = Output::Human)]
    pub output: Output,

    /// No progress display, only the result.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else
    /// /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Drawings of the run's report (with PLAN).
    #[command(flatten)]
    pub report_files: ReportFiles,

    /// Webhooks for the run, besides the plan's `[notify]`.
    #[command(flatten)]
    pub notify: NotifyArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where a run draws its report, besides printing it.
#[derive(Debug, Clone, Default, Args)]
pub struct ReportFiles {
    /// Also draw the report as one self-contained HTML page (a chart over time with
    /// device lanes, the numbers, the policy's actions and the plan's limits) into FILE.
    #[arg(long, value_name = "FILE")]
    pub report_html: Option<PathBuf>,

    /// Also draw the report's chart alone as an SVG file, for embedding.
    #[arg(long, value_name = "FILE")]
    pub report_svg: Option<PathBuf>,
}

/// Webhooks given on the command line: they add to the plan's `[notify]` (see
/// docs/notify.md).
#[derive(Debug, Clone, Default, Args)]
pub struct NotifyArgs {
    /// Also POST the run's events as JSON to URL (http:// or https://; repeatable), with
    /// the plan's `[notify]` settings or their defaults.
    #[arg(long = "notify", value_name = "URL", global = true, value_parser = webhook_url)]
    pub urls: Vec<String>,

    /// Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256),
    /// instead of the one the plan's `notify.secret_env` names.
    // Checked when the run starts, not by clap, whose refusal would quote the value: it
    // may be the key itself, given by mistake.
    #[arg(long, value_name = "NAME", global = true)]
    pub notify_secret_env: Option<String>,
}

/// A webhook URL, by the plan's rule.
fn webhook_url(text: &str) -> Result<String, String> {
    match plans::webhook_url_problem(text) {
        None => Ok(text.to_string()),
        Some(problem) => Err(format!("{} {problem}", plans::text::quoted(text))),
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Progress bars on a terminal (stderr), a readable report on stdout.
    Human,
    /// One JSON report object on stdout; nothing else on stdout.
    Json,
    /// One JSON object per line: events as they happen, then the report.
    Ndjson,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the VM as the plan says.
    #[command(after_help = ExitStatus::help_table())]
    Migrate {
        /// The plan file.
        plan: PathBuf,
        /// Drawings of the run's report.
        #[command(flatten)]
        report_files: ReportFiles,
    },
    /// Migrate several VMs in one run, as when a host is emptied: at most --parallel
    /// migrations at once, sharing --bandwidth-budget; each plan keeps its own limits,
    /// policy and device gate. One report with every VM's; the exit code is the worst
    /// of the VMs' (4 over 3 over 1 over 0), 130 when interrupted.
    #[command(after_help = ExitStatus::help_table())]
    Run {
        /// Plan files, or directories whose `*.toml` files are plans (in name order).
        #[arg(required = true, value_name = "PLAN|DIR")]
        plans: Vec<PathBuf>,
        /// How many migrations run at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
        /// The bandwidth all running migrations share (e.g. `1GiB/s`, `800MiB/s`):
        /// divided equally among them (a plan's lower `max_bandwidth` kept), and
        /// divided again as they start and finish. Without it each plan's own cap holds.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        bandwidth_budget: Option<Rate>,
        /// Start no new migration after one did not migrate; the running ones finish or
        /// abort by their own policies.
        #[arg(long)]
        fail_fast: bool,
        /// In which order the VMs start.
        #[arg(long, value_enum, default_value_t = Order::Plan)]
        order: Order,
    },
    /// Look at both sides of a plan and repair what a run that died left behind: cancel
    /// a migration nobody drives, put back changed settings, resume a paused source
    /// unless the destination runs the VM (exit 0 settled, 4 a person must decide).
    #[command(after_help = ExitStatus::help_table())]
    Recover {
        /// The plan file.
        plan: PathBuf,
    },
    /// Check, changing nothing, whether the plan will work and what it will cost: both
    /// monitors, the plan's devices on this host's kernel, and a prediction from one
    /// dirty-rate measurement (exit 0 ready, 3 not ready, 2 invalid plan). With --host,
    /// whether this host can send or receive VFIO migrations at all.
    #[command(
        after_help = "Every row has an id, a status (pass, warn, fail), a finding and a hint; --output json carries the same rows. See docs/check.md."
    )]
    Check {
        /// The plan file (not with --host).
        #[arg(required_unless_present = "host")]
        plan: Option<PathBuf>,
        /// Check this host alone, without a plan.
        #[arg(long, conflicts_with_all = ["plan", "side", "no_measure"])]
        host: bool,
        /// Only this host's own checks of the plan's devices for one side, contacting no
        /// monitor but that side's own: run it on each host and combine the JSON.
        #[arg(long, value_enum)]
        side: Option<CheckSide>,
        /// Read /sys and /dev under this directory instead of / (fixture trees).
        #[arg(long, value_name = "DIR")]
        sysfs_root: Option<PathBuf>,
        /// Take no dirty-rate measurement, so make no prediction.
        #[arg(long)]
        no_measure: bool,
    },
    /// Check a plan without contacting any host (exit 0 valid, 2 invalid).
    Validate {
        /// The plan file.
        plan: PathBuf,
    },
    /// Print the plan's JSON Schema.
    Schema,
    /// Start two local QEMUs with a bundled dirtying guest and migrate it between them
    /// (with --libvirt: as a libvirt domain between two private libvirt daemons).
    #[command(after_help = ExitStatus::help_table())]
    Demo {
        /// What the guest does and how the bundled plan reacts.
        #[arg(long, value_enum, default_value_t = Scenario::Converge)]
        scenario: Scenario,
        /// Write the generated plan into this directory instead of the temporary one.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Migrate without the two modelled VFIO devices.
        #[arg(long)]
        no_devices: bool,
        /// Use the built-in simulated hypervisor pair instead of starting QEMU (chosen
        /// automatically when qemu-system-x86_64 is not installed).
        #[arg(long)]
        sim: bool,
        /// Run the guest as a libvirt domain under two private libvirt daemons on this
        /// machine and migrate it through libvirt instead of QMP; the modelled devices sit
        /// behind libvirt's monitor (its emulator runs the device model's wrapper,
        /// vfio-model-qemu, built beside this binary). Needs root, libvirt and QEMU;
        /// without them it exits 3 (no fallback to QMP or the simulated pair).
        #[arg(long, conflicts_with = "sim")]
        libvirt: bool,
        /// Drawings of the run's report (the HTML page goes to
        /// ./vfio-migrate-demo-report.html, or into the --keep directory, unless
        /// --report-html says where).
        #[command(flatten)]
        report_files: ReportFiles,
    },
    /// Draw a saved JSON report (as `--output json` writes it, or the last line of
    /// `--output ndjson`) as an HTML page and/or an SVG chart.
    #[command(group(ArgGroup::new("drawings").required(true).multiple(true).args(["html", "svg"])))]
    Report {
        /// The JSON report; `-` reads it from stdin.
        json: PathBuf,
        /// Write the self-contained HTML page here.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Write the SVG chart here.
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
    },
    /// Watch a run and repair if it dies (started by each run; not for people).
    #[command(hide = true)]
    Guard {
        /// The plan file of the run.
        plan: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The order in which `run` starts its VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Order {
    /// As the plans were given.
    Plan,
    /// Shortest predicted migration first (check's prediction from one dirty-rate
    /// measurement per VM; the guest's RAM size when there is none).
    ShortestFirst,
}

/// A `--bandwidth-budget` value, in the plan's units.
fn parse_rate(text: &str) -> Result<Rate, String> {
    Rate::parse(text).map_err(|e| e.to_string())
}

/// The side `check --side` looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckSide {
    /// The host the VM runs on now.
    Source,
    /// The host it moves to.
    Destination,
}

/// Demo scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 256 MiB working set dirtied at 50 MiB/s over a 128 MiB/s link: converges.
    Converge,
    /// 256 MiB at 200 MiB/s over 128 MiB/s: never converges; the policy aborts.
    Abort,
    /// The same stalled workload; the policy raises the downtime limit to finish.
    Force,
    /// The same stalled workload; a vCPU dirty limit makes it converge.
    Throttle,
}
