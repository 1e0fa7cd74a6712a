//! `vfio-migrate check`: the dry run. Reads the plan, the monitors and this host's
//! kernel, changes nothing, and prints the rows for people or as JSON for scripts.

use std::path::PathBuf;

use backends::host::{self, Host};
use engine::check::{CheckReport, Row, Status};
use engine::driver::Side;
use plans::{Plan, QmpAddress};

use crate::args::{CheckSide, Output};
use crate::render::print_json;

/// What `check` was asked.
pub struct Request {
    /// The plan; `None` checks this host alone (`--host`).
    pub plan: Option<PathBuf>,
    /// Only this host's checks for one side of the plan.
    pub side: Option<CheckSide>,
    /// Where /sys and /dev are read.
    pub root: PathBuf,
    /// Whether to measure the dirty rate.
    pub measure: bool,
    /// How to print.
    pub output: Output,
}

/// Runs the check and returns the exit code.
pub fn run(request: Request) -> i32 {
    let host = Host::new(request.root.clone());
    let Some(path) = &request.plan else {
        let report = CheckReport::new(None, host::host_rows(&host));
        print(&report, request.output);
        return report.rc;
    };
    let plan = match crate::load_plan(path, request.output) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return crate::exit::usage(request.output, &format!("cannot start the async runtime: {e}")),
    };
    let report = match request.side {
        Some(side) => runtime.block_on(one_side(&plan, &host, side_of(side))),
        None => {
            let mut driver = backends::open(&plan);
            let mut report = runtime.block_on(engine::check::check_plan(
                &plan,
                driver.as_mut(),
                request.measure,
                Vec::new(),
            ));
            let surveys = std::mem::take(&mut report.surveys);
            let mut found = Vec::new();
            for (side, survey) in [Side::Source, Side::Destination].into_iter().zip(surveys) {
                if is_local(&plan, side) {
                    let (rows, devices) = host::plan_rows(&plan, &host, side, survey.as_ref());
                    report.add_rows(rows);
                    found.push((side, devices));
                }
            }
            if let [(_, source), (_, destination)] = found.as_slice() {
                report.add_rows(host::across_hosts(source, destination));
            }
            report.host_devices = found
                .iter()
                .flat_map(|(side, devices)| devices.iter().map(|d| json_of(*side, d)))
                .collect();
            report
        }
    };
    print(&report, request.output);
    report.rc
}

/// A plan whose sides are libvirt domains: valid, but `check` reads QEMU monitors only
/// so far, so it says so as a failed row (not ready, exit 3) rather than guess.
fn side_of(side: CheckSide) -> Side {
    match side {
        CheckSide::Source => Side::Source,
        CheckSide::Destination => Side::Destination,
    }
}

/// `check --side`: this host's checks of the plan's devices for one side. Reads that
/// side's monitor, when it answers, only for the devices' host addresses.
async fn one_side(plan: &Plan, host: &Host, side: Side) -> CheckReport {
    let mut driver = backends::open(plan);
    let survey = match driver.survey() {
        Some(survey) => match survey.connect_side(side).await {
            Ok(()) => survey.survey(side).await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    let (rows, facts) = host::plan_rows(plan, host, side, survey.as_ref());
    let mut report = CheckReport::new(
        Some(plan.vm.name.clone()),
        vec![Row::pass(
            "plan.valid",
            format!("valid plan for VM {:?}", plan.vm.name),
        )],
    );
    report.add_rows(rows);
    report.host_devices = facts.iter().map(|d| json_of(side, d)).collect();
    report
}

/// Whether `side`'s monitor is on this host, so that its devices are too.
fn is_local(plan: &Plan, side: Side) -> bool {
    let endpoint = match side {
        Side::Source => &plan.source,
        Side::Destination => &plan.destination.endpoint,
    };
    match (endpoint.qmp(), endpoint.libvirt()) {
        (Some(QmpAddress::Unix(_)), _) => true,
        (Some(address), _) => !address.is_remote(),
        // `qemu:///system` and `qemu+unix://`: the daemon, and so its devices, are here.
        (None, Some(libvirt)) => !libvirt.is_remote(),
        (None, None) => false,
    }
}

fn json_of(side: Side, found: &host::DeviceHost) -> serde_json::Value {
    serde_json::json!({"side": side, "device": serde_json::to_value(found).unwrap_or(serde_json::Value::Null)})
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_puts_hints_under_their_rows_and_the_verdict_last() {
        let report = CheckReport::new(
            Some("vm".into()),
            vec![
                Row::pass("source.reachable", "answers"),
                Row::fail("vm.ram", "guest RAM differs", "start it with the source's -m"),
            ],
        );
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STATUS CHECK"));
        assert!(lines[1].starts_with("pass   source.reachable  answers"));
        assert!(lines[2].starts_with("fail   vm.ram            guest RAM differs"));
        assert!(lines[3].trim_start().starts_with("hint: start it with"));
        assert_eq!(
            lines[4],
            "verdict: not ready: 1 of 2 checks failed; first: guest RAM differs"
        );
    }
}
