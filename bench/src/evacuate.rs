//! Emptying a host: three VMs (256 MiB guests, downtime limit 300 ms) evacuated with
//! `vfio-migrate run` two ways, taking turns, N rounds on fresh pairs: all three at
//! once under the budget (`--parallel 3`), and one after another with the whole budget
//! each (`--parallel 1`). Two workloads: busy guests (64 MiB rewritten at 16 MiB/s)
//! under a 96 MiB/s budget, where the link is what limits, and quiet ones (16 MiB
//! written once) under 1 GiB/s, where each VM's fixed steps (connect, preflight,
//! setup, verify) are most of its time. Per round and as medians: the run's wall time,
//! the sum and the longest of the guests' pauses (`paused_ms`, STOP to RESUME as each
//! VM's report has it), bytes sent, and how many migrated.

use std::ffi::OsStr;
use std::path::PathBuf;

use rig::{Accel, GuestParams, PairOptions, QemuPair};

use crate::{child, median, plan};

/// A workload: what each guest does, and the budget the three share.
struct Workload {
    name: &'static str,
    wss_mb: u32,
    rate_mb: u32,
    budget: &'static str,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "busy guests (64 MiB at 16 MiB/s), budget 96MiB/s",
        wss_mb: 64,
        rate_mb: 16,
        budget: "96MiB/s",
    },
    Workload {
        name: "quiet guests (16 MiB written once), budget 1GiB/s",
        wss_mb: 16,
        rate_mb: 0,
        budget: "1GiB/s",
    },
];

/// One evacuation's figures.
struct Round {
    wall_ms: f64,
    pause_sum_ms: f64,
    pause_max_ms: f64,
    sent_mib: f64,
    migrated: u64,
    rc: i32,
}

fn small_pair(w: &Workload) -> QemuPair {
    QemuPair::start(&PairOptions {
        mem_mb: 256,
        guest: GuestParams {
            wss_mb: w.wss_mb,
            rate_mb: w.rate_mb,
        },
        accel: Accel::Auto,
        dirty_ring: true,
        ..PairOptions::default()
    })
    .unwrap_or_else(|e| crate::die(&format!("cannot start a QEMU pair: {e}")))
}

/// Three fresh pairs evacuated with `--parallel parallel`.
fn evacuate(bin: &std::path::Path, w: &Workload, parallel: u32) -> Round {
    let pairs = [small_pair(w), small_pair(w), small_pair(w)];
    let dir = pairs[0].dir();
    let plans: Vec<PathBuf> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = dir.join(format!("vm{i}.toml"));
            let text =
                plan(p, "downtime = \"300ms\"", "[\"abort\"]").replace("\"bench\"", &format!("\"vm{i}\""));
            std::fs::write(&path, text).unwrap_or_else(|e| crate::die(&format!("cannot write a plan: {e}")));
            path
        })
        .collect();
    let parallel = parallel.to_string();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("run"),
        OsStr::new("--parallel"),
        OsStr::new(&parallel),
        OsStr::new("--bandwidth-budget"),
        OsStr::new(w.budget),
    ];
    args.extend(plans.iter().map(|p| p.as_os_str()));
    let r = child::run_args(bin, dir, &args);
    let vms = r.report["vms"].as_array().cloned().unwrap_or_default();
    let pauses: Vec<f64> = vms.iter().filter_map(|v| v["paused_ms"].as_f64()).collect();
    Round {
        wall_ms: r.wall.as_secs_f64() * 1000.0,
        pause_sum_ms: pauses.iter().sum(),
        pause_max_ms: pauses.iter().copied().fold(0.0, f64::max),
        sent_mib: r.report["summary"]["transferred_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        migrated: r.report["summary"]["migrated"].as_u64().unwrap_or(0),
        rc: r.code,
    }
}

fn show(name: &str, i: usize, r: &Round) {
    println!(
        "round {i} {name:<10}: rc {}, {} of 3 migrated, wall {:.0} ms, pauses sum {:.0} ms (longest {:.0} ms), sent {:.0} MiB",
        r.rc, r.migrated, r.wall_ms, r.pause_sum_ms, r.pause_max_ms, r.sent_mib
    );
}

fn medians(name: &str, rounds: &[Round]) {
    let m = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    println!(
        "median {name:<10}: wall {:.0} ms, pauses sum {:.0} ms, longest pause {:.0} ms, sent {:.0} MiB ({} rounds, {} VMs migrated of {})",
        m(|r| r.wall_ms),
        m(|r| r.pause_sum_ms),
        m(|r| r.pause_max_ms),
        m(|r| r.sent_mib),
        rounds.len(),
        rounds.iter().map(|r| r.migrated).sum::<u64>(),
        rounds.len() * 3
    );
}

/// `runs` rounds of each workload, parallel and sequential taking turns at going first.
pub fn compare(bin: &std::path::Path, runs: usize) {
    for w in &WORKLOADS {
        println!(
            "== evacuate: three 256 MiB VMs, {}: --parallel 3 against --parallel 1",
            w.name
        );
        let mut parallel = Vec::new();
        let mut sequential = Vec::new();
        for i in 1..=runs {
            let order: [u32; 2] = if i % 2 == 1 { [3, 1] } else { [1, 3] };
            for p in order {
                let round = evacuate(bin, w, p);
                let (name, all) = match p {
                    3 => ("parallel", &mut parallel),
                    _ => ("sequential", &mut sequential),
                };
                show(name, i, &round);
                all.push(round);
            }
        }
        medians("parallel", &parallel);
        medians("sequential", &sequential);
    }
}
