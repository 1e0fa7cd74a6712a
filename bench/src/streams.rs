//! What each stream choice does to a migration that cannot converge on its own: 256 MiB
//! dirtied at 200 MiB/s over a link capped at 128 MiB/s, the plan's default escalation
//! (throttle with auto-converge, force within the downtime limit, abort), a 120 s
//! deadline. The choices take turns in each round, on a fresh QEMU pair each run; prints
//! each run and the medians, asserts nothing (`scripts/bench streams`).

use std::path::Path;

use rig::{Accel, GuestParams, PairOptions, QemuPair};

use crate::{child, die, median};

/// The choices measured, as `[migration]` lines.
const CHOICES: &[(&str, &str)] = &[
    ("none (one stream)", ""),
    ("multifd, 4 channels", "multifd_channels = 4"),
    (
        "multifd, 4 channels, zstd level 1",
        "multifd_channels = 4\nmultifd_compression = \"zstd\"\nmultifd_compression_level = 1",
    ),
    ("xbzrle, 256 MiB cache", "xbzrle_cache = \"256MiB\""),
    ("zero pages: none", "zero_page_detection = \"none\""),
];

fn plan(pair: &QemuPair, migration: &str) -> String {
    format!(
        "[vm]\nname = \"bench\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\nlisten = \"tcp:127.0.0.1:{}\"\n[migration]\n{migration}\n[limits]\nmax_bandwidth = \"128MiB/s\"\ndeadline = \"120s\"\n[convergence]\nstall_passes = 2\n",
        pair.source.qmp_socket.display(),
        pair.destination.qmp_socket.display(),
        pair.migration_port
    )
}

/// Runs every choice `runs` times, taking turns, and prints each run and the medians.
pub fn compare(bin: &Path, runs: usize) {
    println!("== stream choices: 256 MiB dirtied at 200 MiB/s over 128 MiB/s, {runs} rounds");
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); CHOICES.len()];
    let mut pauses: Vec<Vec<f64>> = vec![Vec::new(); CHOICES.len()];
    let mut migrated = vec![0usize; CHOICES.len()];
    for round in 0..runs {
        for (i, (name, migration)) in CHOICES.iter().enumerate() {
            let pair = QemuPair::start(&PairOptions {
                guest: GuestParams {
                    wss_mb: 256,
                    rate_mb: 200,
                },
                accel: Accel::Auto,
                dirty_ring: false,
                ..PairOptions::default()
            })
            .unwrap_or_else(|e| die(&format!("cannot start a QEMU pair: {e}")));
            let r = child::run(bin, pair.dir(), &plan(&pair, migration));
            let total = r.report["total_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
            let paused = r.report["paused_ms"].as_u64().map(|ms| ms as f64);
            let actions: Vec<&str> = r.report["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["action"].as_str())
                .collect();
            println!(
                "round {} {name}: rc {} {} in {total:.1}s, paused {} ms, passes {}, actions {actions:?}, stream {}; tool wall {:.1}s cpu {:.2}s rss {} KiB",
                round + 1,
                r.code,
                r.report["result"].as_str().unwrap_or("?"),
                paused.map_or("-".to_string(), |p| format!("{p:.0}")),
                r.report["passes"],
                r.report["stream"],
                r.wall.as_secs_f64(),
                r.cpu.as_secs_f64(),
                r.max_rss_kib,
            );
            if r.code == 0 {
                migrated[i] += 1;
                totals[i].push(total);
                if let Some(p) = paused {
                    pauses[i].push(p);
                }
            }
        }
    }
    println!("== medians over the runs that migrated ({runs} runs each)");
    for (i, (name, _)) in CHOICES.iter().enumerate() {
        println!(
            "{name}: migrated {}/{runs}, total {:.1}s, paused {:.0} ms",
            migrated[i],
            median(totals[i].clone()),
            median(pauses[i].clone())
        );
    }
}
