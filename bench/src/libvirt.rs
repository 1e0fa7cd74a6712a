//! What going through libvirt costs: the same converging workload (256 MiB dirtied at
//! 50 MiB/s, a 128 MiB/s ceiling, policy abort) migrated over QMP (a `QemuPair`) and
//! through libvirt (a `LibvirtPair`: two private daemons and a domain), alternating,
//! N runs each. Per run and as medians: the report's `total_ms`, the tool process's
//! wall time, the guest's pause (`paused_ms`, STOP on the source to RESUME on the
//! destination as the tool saw them), QEMU's or libvirt's `downtime_ms`, the tool's CPU
//! time and peak memory (`wait4`), and the report's phase timings, which say where the
//! difference is spent.

use std::collections::BTreeMap;
use std::path::Path;

use rig::{Accel, GuestParams, LibvirtPair, LibvirtPairOptions, RigError};

use crate::child::{self, Measured};
use crate::{median, pair, plan};

/// The workload and plan both paths run.
const WSS_MB: u32 = 256;
const RATE_MB: u32 = 50;
const LIMITS: &str = "max_bandwidth = \"128MiB/s\"";
const ESCALATION: &str = "[\"abort\"]";

/// The phases shown, in the order a run goes through them.
const PHASES: [&str; 8] = [
    "connect",
    "preflight",
    "configure",
    "listen",
    "migrate",
    "converge",
    "switchover",
    "verify",
];

/// One path's runs.
#[derive(Default)]
struct Runs {
    rows: Vec<Row>,
    failed: usize,
}

/// What one run measured.
struct Row {
    total_ms: f64,
    wall_ms: f64,
    paused_ms: Option<f64>,
    downtime_ms: Option<f64>,
    cpu_ms: f64,
    max_rss_mib: f64,
    phases: BTreeMap<String, f64>,
    passes: u64,
}

impl Row {
    fn of(r: &Measured) -> Row {
        let report = &r.report;
        let phases = report["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["phase"].as_str()?.to_string(), p["ms"].as_f64()?)))
            .fold(BTreeMap::new(), |mut all, (phase, ms)| {
                *all.entry(phase).or_insert(0.0) += ms;
                all
            });
        Row {
            total_ms: report["total_ms"].as_f64().unwrap_or(f64::NAN),
            wall_ms: r.wall.as_secs_f64() * 1000.0,
            paused_ms: report["paused_ms"].as_f64(),
            downtime_ms: report["downtime_ms"].as_f64(),
            cpu_ms: r.cpu.as_secs_f64() * 1000.0,
            max_rss_mib: r.max_rss_kib as f64 / 1024.0,
            phases,
            passes: report["passes"].as_u64().unwrap_or(0),
        }
    }
}

/// `runs` rounds, each one run over QMP and one through libvirt, taking turns at going
/// first.
pub fn compare(bin: &Path, runs: usize) {
    println!(
        "== libvirt: {WSS_MB} MiB dirtied at {RATE_MB} MiB/s over 128 MiB/s, policy abort; QMP vs libvirt, {runs} runs each"
    );
    let (mut qmp, mut libvirt) = (Runs::default(), Runs::default());
    for i in 0..runs {
        let libvirt_first = i % 2 == 1;
        if libvirt_first && !run_libvirt(bin, i, &mut libvirt) {
            return;
        }
        run_qmp(bin, i, &mut qmp);
        if !libvirt_first && !run_libvirt(bin, i, &mut libvirt) {
            return;
        }
    }
    summary("qmp", &qmp);
    summary("libvirt", &libvirt);
    phases(&qmp, &libvirt);
}

fn run_qmp(bin: &Path, i: usize, into: &mut Runs) {
    let p = pair(WSS_MB, RATE_MB);
    let r = child::run(bin, p.dir(), &plan(&p, LIMITS, ESCALATION));
    record("qmp", i, &r, into);
}

/// One run through libvirt; false when libvirt cannot run here at all.
fn run_libvirt(bin: &Path, i: usize, into: &mut Runs) -> bool {
    let p = match LibvirtPair::start(&LibvirtPairOptions {
        guest: GuestParams {
            wss_mb: WSS_MB,
            rate_mb: RATE_MB,
        },
        accel: Accel::Auto,
        dirty_ring: true,
        ..LibvirtPairOptions::default()
    }) {
        Ok(p) => p,
        Err(RigError::LibvirtUnavailable { why }) => {
            println!("skipped: {why}");
            return false;
        }
        Err(e) => crate::die(&format!("cannot start a libvirt pair: {e}")),
    };
    // The plan, locks and journal live in the source daemon's tree, removed with it.
    let r = child::run(bin, p.source.tree(), &libvirt_plan(&p));
    record("libvirt", i, &r, into);
    if r.code != 0 {
        eprintln!("{}", p.diagnostics());
    }
    true
}

/// The QMP plan's limits and policy, with libvirt endpoints.
fn libvirt_plan(p: &LibvirtPair) -> String {
    format!(
        "[vm]\nname = \"bench\"\n[source]\nlibvirt = \"{}\"\ndomain = \"{}\"\n[destination]\nlibvirt = \"{}\"\n[limits]\n{LIMITS}\n[convergence]\nstall_passes = 2\n[policy]\nescalation = {ESCALATION}\n",
        p.source.uri(),
        p.domain(),
        p.destination.uri()
    )
}

fn record(path: &str, i: usize, r: &Measured, into: &mut Runs) {
    let row = Row::of(r);
    println!(
        "{path} run {}: rc {}, {} passes; total {:.0} ms (tool wall {:.0} ms), pause {}, downtime {}; CPU {:.0} ms, ru_maxrss {:.1} MiB, VmHWM run {}; phases {}",
        i + 1,
        r.code,
        row.passes,
        row.total_ms,
        row.wall_ms,
        ms(row.paused_ms),
        ms(row.downtime_ms),
        row.cpu_ms,
        row.max_rss_mib,
        r.hwm_kib
            .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        PHASES
            .iter()
            .filter_map(|p| row.phases.get(*p).map(|ms| format!("{p} {ms:.1}")))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if r.code == 0 {
        into.rows.push(row);
    } else {
        eprintln!(
            "bench: {path} run {}: {} ({})",
            i + 1,
            r.report["result"],
            r.report["msg"].as_str().unwrap_or("no report")
        );
        into.failed += 1;
    }
}

fn summary(path: &str, p: &Runs) {
    let med = |f: &dyn Fn(&Row) -> Option<f64>| {
        let v: Vec<f64> = p.rows.iter().filter_map(f).collect();
        match v.is_empty() {
            true => "-".to_string(),
            false => format!("{:.0}", median(v)),
        }
    };
    println!(
        "median {path} (n={}, {} failed): total {} ms, tool wall {} ms, pause {} ms, downtime {} ms, CPU {} ms, ru_maxrss {} MiB",
        p.rows.len(),
        p.failed,
        med(&|r| Some(r.total_ms)),
        med(&|r| Some(r.wall_ms)),
        med(&|r| r.paused_ms),
        med(&|r| r.downtime_ms),
        med(&|r| Some(r.cpu_ms)),
        med(&|r| Some(r.max_rss_mib)),
    );
}

/// The phases' median durations side by side.
fn phases(qmp: &Runs, libvirt: &Runs) {
    println!("| phase | qmp ms (median) | libvirt ms (median) |");
    println!("|---|---|---|");
    let med = |p: &Runs, phase: &str| {
        let v: Vec<f64> = p
            .rows
            .iter()
            .filter_map(|r| r.phases.get(phase).copied())
            .collect();
        match v.is_empty() {
            true => "-".to_string(),
            false => format!("{:.1}", median(v)),
        }
    };
    for phase in PHASES {
        println!("| {phase} | {} | {} |", med(qmp, phase), med(libvirt, phase));
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} ms"))
}
