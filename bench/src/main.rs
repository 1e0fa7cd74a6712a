//! Benchmarks on the real rig; prints numbers, asserts nothing.
//!
//! ```text
//! cargo build --release -p vfio-migrate && cargo run --release -p vfio-migrate-bench -- [SECTION] [--runs N] [--cap SECS]
//! ```
//!
//! Sections (all of them, in this order, when none is named):
//!
//! 1. `reaction`: a workload that cannot converge (256 MiB dirtied at 200 MiB/s over a
//!    128 MiB/s link, policy abort): passes and seconds until the policy acted.
//! 2. `gate`: from QEMU's `pre-switchover` to its `device` (QEMU's timestamps), the tool
//!    against a raw client that answers at once, 11 idle migrations each (or N if more).
//! 3. `converging`: the converging workload, the tool, the bare client and the bare
//!    client holding the guest at `pre-switchover` taking turns, 10 (or N if more)
//!    rounds: the guest's pause and total time on QEMU's timestamps, the tool's CPU and
//!    peak memory (`wait4` and `/proc`).
//! 4. `peers`: the tool's "make it converge" plans against the peers' algorithms on the
//!    issue's three workloads, N rounds (default 3), each migration cancelled at the cap
//!    (default 60 s).
//!
//! 5. `streams`: each stream choice of `[migration]` on a migration that cannot
//!    converge by itself, 3 rounds (or N).
//! 6. `demos`: each demo scenario 10 times (or N), counted against what the README
//!    says it does; needs the binary built with the cli's `demo` feature.
//! 7. `libvirt`: the converging workload over QMP and through libvirt (two private
//!    libvirt daemons), alternating, 5 runs each (or N): total and wall time, the pause,
//!    the downtime, the tool's CPU and peak memory, and each phase's time. Skipped where
//!    libvirt cannot run (not installed, not root).
//! 8. `evacuate`: three small VMs emptied from a host with `vfio-migrate run`, all at
//!    once under a 96 MiB/s budget against one after another, taking turns, 5 rounds
//!    (or N): wall time, the sum and the longest of the pauses, bytes sent.
//! 9. `webhooks`: the gate and the pause of an idle migration with `--notify` to a
//!    receiver that never answers, against none, taking turns, 11 runs each (or N).
//!
//! `vfio-migrate-bench predict [--runs N]` instead measures `check`'s prediction against
//! the migration that follows it, on five workloads (`BENCH_ONLY=TEXT` keeps those
//! whose name contains TEXT).

mod child;
mod converging;
mod demos;
mod evacuate;
mod gate;
mod libvirt;
mod observe;
mod peers;
mod predict;
mod streams;
mod webhooks;

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

/// The `p`th percentile of `sorted`, interpolated between the two nearest ranks, so
/// that the 50th of an even count is the mean of the middle two. (Rounding to one rank
/// took the upper middle: of a pause that comes in two modes, the upper one.)
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = (p / 100.0).clamp(0.0, 1.0) * last as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

/// Prints `name: n=N p50 X ms (min–max)` for `values` (ms); returns the p50.
fn spread(name: &str, values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let p50 = percentile(&v, 50.0);
    println!(
        "{name}: n={} p50 {p50:.3} ms ({:.3}–{:.3})",
        v.len(),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN)
    );
    p50
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

fn flag(name: &str) -> Option<usize> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
}

fn main() {
    let runs = flag("--runs");
    let cap = Duration::from_secs(flag("--cap").unwrap_or(60) as u64);
    let bin = binary();
    if !bin.exists() {
        eprintln!(
            "bench: {} not found; build it with `cargo build --release -p vfio-migrate`",
            bin.display()
        );
        std::process::exit(1);
    }
    let section = std::env::args().nth(1).filter(|a| !a.starts_with("--"));
    let wants = |name: &str| section.as_deref().is_none_or(|s| s == name);
    if section.as_deref() == Some("predict") {
        predict::accuracy(&bin, runs.unwrap_or(5).min(5));
        return;
    }
    if let Some(accel) = rig_accel() {
        println!("(accelerator: {accel})");
    }
    if wants("reaction") {
        reaction(&bin);
    }
    if wants("gate") {
        gate::compare(&bin, runs.unwrap_or(11).max(11));
    }
    if wants("converging") {
        converging::compare(&bin, runs.unwrap_or(10).max(10));
    }
    if wants("peers") {
        peers::side_by_side(&bin, runs.unwrap_or(3), cap);
    }
    if wants("streams") {
        streams::compare(&bin, runs.unwrap_or(3));
    }
    if wants("demos") {
        demos::repeat(&bin, runs.unwrap_or(10).max(10));
    }
    if wants("libvirt") {
        libvirt::compare(&bin, runs.unwrap_or(5));
    }
    if wants("evacuate") {
        evacuate::compare(&bin, runs.unwrap_or(5));
    }
    if wants("webhooks") {
        webhooks::compare(&bin, runs.unwrap_or(11));
    }
}

/// How soon the policy acts on a workload that cannot converge.
fn reaction(bin: &std::path::Path) {
    println!("== reaction: 256 MiB dirtied at 200 MiB/s over 128 MiB/s, policy abort");
    for i in 0..3 {
        let p = pair(256, 200);
        let r = child::run(
            bin,
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
}

fn rig_accel() -> Option<String> {
    let p = pair(16, 0);
    Some(format!(
        "{} / cpu {} / dirty ring {}",
        p.accel.kind, p.accel.cpu, p.accel.dirty_ring
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![24.0, 18.0, 19.0, 23.0]), 21.0);
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn percentiles_fall_between_ranks_and_stay_inside_the_values() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 4.6);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
