//! `vfio-migrate check`: the dry run. Reads the plan, both monitors and this host's
//! kernel, changes nothing, and prints the rows for people or as JSON for scripts.

use std::path::PathBuf;

use engine::check::{CheckReport, Row, Status};

use crate::args::Output;
use crate::render::print_json;

/// What `check` was asked.
pub struct Request {
    /// The plan.
    pub plan: PathBuf,
    /// Whether to measure the dirty rate.
    pub measure: bool,
    /// How to print.
    pub output: Output,
}

/// Runs the check and returns the exit code.
pub fn run(request: Request) -> i32 {
    let plan = match crate::load_plan(&request.plan, request.output) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let report = match plan_report(&plan, request.measure, request.output) {
        Ok(report) => report,
        Err(code) => return code,
    };
    print(&report, request.output);
    report.rc
}

fn plan_report(plan: &plans::Plan, measure: bool, output: Output) -> Result<CheckReport, i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::exit::usage(output, &format!("cannot start the async runtime: {e}")))?;
    let mut driver = backends::open(plan);
    Ok(runtime.block_on(engine::check::check_plan(
        plan,
        driver.as_mut(),
        measure,
        Vec::new(),
    )))
}

fn print(report: &CheckReport, output: Output) {
    match output {
        Output::Human => print!("{}", table(report)),
        Output::Json | Output::Ndjson => print_json(report),
    }
}

/// The rows as a table, hints under their rows, the verdict last.
pub fn table(report: &CheckReport) -> String {
    let width = report.rows.iter().map(|r| r.id.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<6} {:<width$}  FINDING\n", "STATUS", "CHECK");
    for row in &report.rows {
        out.push_str(&line(row, width));
    }
    out.push_str(&format!("verdict: {}\n", report.msg));
    out
}

fn line(row: &Row, width: usize) -> String {
    let mut out = format!("{:<6} {:<width$}  {}\n", row.status.word(), row.id, row.finding);
    if row.status != Status::Pass && !row.hint.is_empty() {
        out.push_str(&format!("{:<6} {:<width$}  hint: {}\n", "", "", row.hint));
    }
    out
}
