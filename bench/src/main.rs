//! Benchmarks on the real rig; prints numbers, asserts nothing.
//!
//! ```text
//! cargo build --release -p vfio-migrate && cargo run --release -p vfio-migrate-bench -- [--runs N]
//! ```
//!
//! 1. Reaction: a workload that cannot converge (256 MiB dirtied at 200 MiB/s over a
//!    128 MiB/s link, policy abort): passes and seconds until the policy acted.
//! 2. Switchover latency: from QEMU's `pre-switchover` event to `migrate-continue`
//!    issued, p50/p99 over N idle migrations (it adds to the guest's pause).
//! 3. The tool's CPU time and peak RSS over a converging migration (from `wait4`).
//! 4. Total time of a converging migration driven by the tool against the same
//!    migration driven by a bare QMP client, as a ratio, alternating in one run.
//!
//! `vfio-migrate-bench predict [--runs N]` instead measures `check`'s prediction against
//! the migration that follows it, on five workloads (`BENCH_ONLY=TEXT` keeps those
//! whose name contains TEXT).

mod bare;
mod child;
mod predict;

use std::path::PathBuf;
use std::time::Duration;

use rig::{Accel, GuestParams, PairOptions, QemuPair};

fn pair(wss_mb: u32, rate_mb: u32) -> QemuPair {
    match QemuPair::start(&PairOptions {
        guest: GuestParams { wss_mb, rate_mb },
        accel: Accel::Auto,
        dirty_ring: true,
        ..PairOptions::default()
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: cannot start a QEMU pair: {e}");
            std::process::exit(1);
        }
    }
}

fn plan(pair: &QemuPair, extra_limits: &str, escalation: &str) -> String {
    format!(
        "[vm]\nname = \"bench\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\nlisten = \"tcp:127.0.0.1:{}\"\n[limits]\n{extra_limits}\n[convergence]\nstall_passes = 2\n[policy]\nescalation = {escalation}\n",
        pair.source.qmp_socket.display(),
        pair.destination.qmp_socket.display(),
        pair.migration_port
    )
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VFIO_MIGRATE_BIN") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name("vfio-migrate")
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let bin = binary();
    if !bin.exists() {
        eprintln!(
            "bench: {} not found; build it with `cargo build --release -p vfio-migrate`",
            bin.display()
        );
        std::process::exit(1);
    }

    if std::env::args().nth(1).as_deref() == Some("predict") {
        predict::accuracy(&bin, runs.min(5));
        return;
    }

    // 1. Reaction to a workload that cannot converge.
    println!("== reaction: 256 MiB dirtied at 200 MiB/s over 128 MiB/s, policy abort");
    for i in 0..3 {
        let p = pair(256, 200);
        let r = child::run(
            &bin,
            p.dir(),
            &plan(
                &p,
                "max_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"",
                "[\"abort\"]",
            ),
        );
        let passes = r.report["passes"].as_u64().unwrap_or(0);
        println!(
            "run {}: rc {}, acted at pass {} after {:.2}s (tool wall {:.2}s); error: {}",
            i + 1,
            r.code,
            passes,
            r.report["total_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
            r.wall.as_secs_f64(),
            r.report["error"].as_str().unwrap_or("-")
        );
    }
    if let Some(accel) = rig_accel() {
        println!("(accelerator: {accel})");
    }

    // 2. Switchover latency.
    println!("== switchover latency: pre-switchover event to migrate-continue, {runs} idle migrations");
    let mut lat = Vec::new();
    for _ in 0..runs {
        let p = pair(64, 0);
        let r = child::run(&bin, p.dir(), &plan(&p, "", "[\"abort\"]"));
        if let Some(us) = r.report["switchover_latency_us"].as_u64() {
            lat.push(us as f64 / 1000.0);
        } else {
            eprintln!("bench: a run reported no switchover latency: {}", r.report);
        }
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "switchover latency ms: n={} p50={:.3} p99={:.3} max={:.3}",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );

    // 3 and 4. Converging workload: tool against bare QMP, alternating.
    println!("== converging: 256 MiB dirtied at 50 MiB/s over 128 MiB/s; tool vs bare QMP client");
    let mut tool_total = Vec::new();
    let mut bare_total = Vec::new();
    for i in 0..5 {
        let p = pair(256, 50);
        let r = child::run(
            &bin,
            p.dir(),
            &plan(&p, "max_bandwidth = \"128MiB/s\"", "[\"abort\"]"),
        );
        let total = r.report["total_ms"].as_u64().unwrap_or(0) as f64;
        let cpu = r.cpu.as_secs_f64();
        println!(
            "tool run {}: rc {}, total {:.0}ms (wall {:.0}ms incl. connect/preflight), downtime {}ms, CPU {:.3}s = {:.2}% of a core, peak RSS {:.1} MiB",
            i + 1,
            r.code,
            total,
            r.wall.as_secs_f64() * 1000.0,
            r.report["downtime_ms"],
            cpu,
            cpu / r.wall.as_secs_f64() * 100.0,
            r.max_rss_kib as f64 / 1024.0
        );
        tool_total.push(total);
        drop(p);
        let p = pair(256, 50);
        match bare::migrate(&p, 128 * 1024 * 1024) {
            Ok(ms) => {
                println!("bare run {}: total {ms:.0}ms", i + 1);
                bare_total.push(ms);
            }
            Err(e) => eprintln!("bench: bare migration failed: {e}"),
        }
    }
    let (t, b) = (median(tool_total), median(bare_total));
    println!(
        "total time median: tool {t:.0}ms, bare {b:.0}ms, ratio {:.3}",
        t / b
    );
    std::thread::sleep(Duration::from_millis(10));
}

fn rig_accel() -> Option<String> {
    let p = pair(16, 0);
    Some(format!(
        "{} / cpu {} / dirty ring {}",
        p.accel.kind, p.accel.cpu, p.accel.dirty_ring
    ))
}
