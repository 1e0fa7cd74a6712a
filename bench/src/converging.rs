//! The pause must not grow: the converging workload (256 MiB dirtied at 50 MiB/s over a
//! 128 MiB/s link) migrated by the tool and by the bare client in turn, the guest's
//! pause (`STOP` to `RESUME`) and the whole migration on QEMU's timestamps, and the
//! tool's CPU time and peak memory.

use std::path::Path;
use std::time::Duration;

use crate::observe::{Observer, Timeline};
use crate::{child, median, pair, peers, plan};

const MIB: u64 = 1024 * 1024;
/// The tool's median pause may be this much above the bare client's.
const PAUSE_SLACK_MS: f64 = 2.0;

/// `rounds` alternating pairs of runs.
pub fn compare(bin: &Path, rounds: usize) {
    println!(
        "== converging: 256 MiB dirtied at 50 MiB/s over 128 MiB/s; tool vs bare client, {rounds} rounds"
    );
    let (mut tool, mut bare) = (Vec::new(), Vec::new());
    let (mut tool_total, mut bare_total) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let p = pair(256, 50);
        let observer = observe(&p);
        let r = child::run(
            bin,
            p.dir(),
            &plan(&p, "max_bandwidth = \"128MiB/s\"", "[\"abort\"]"),
        );
        let t = observer.finish(Duration::from_millis(500));
        let cpu = r.cpu.as_secs_f64();
        println!(
            "tool run {}: rc {}, total {}, pause {}; CPU {cpu:.3}s = {:.2}% of a core; ru_maxrss {:.1} MiB, VmHWM run {} guardian {}, threads {}",
            i + 1,
            r.code,
            ms(t.total_ms()),
            ms(t.pause_ms()),
            cpu / r.wall.as_secs_f64() * 100.0,
            r.max_rss_kib as f64 / 1024.0,
            mib(r.hwm_kib),
            mib(r.guardian_hwm_kib),
            r.threads.map_or("-".into(), |n| n.to_string()),
        );
        keep(&t, &mut tool, &mut tool_total);
        drop(p);
        let p = pair(256, 50);
        let observer = observe(&p);
        let migrated = peers::bare(&p, 128 * MIB, Duration::from_secs(60));
        let t = observer.finish(Duration::from_millis(500));
        match migrated {
            Ok(true) => {
                println!(
                    "bare run {}: total {}, pause {}",
                    i + 1,
                    ms(t.total_ms()),
                    ms(t.pause_ms())
                );
                keep(&t, &mut bare, &mut bare_total);
            }
            Ok(false) => eprintln!("bench: the bare migration did not finish"),
            Err(e) => eprintln!("bench: bare migration failed: {e}"),
        }
    }
    let (t, b) = (median(tool.clone()), median(bare.clone()));
    println!(
        "pause median: tool {t:.1} ms (n={}), bare {b:.1} ms (n={}); the tool {} within {PAUSE_SLACK_MS} ms of bare",
        tool.len(),
        bare.len(),
        if t <= b + PAUSE_SLACK_MS { "is" } else { "is NOT" }
    );
    let (t, b) = (median(tool_total), median(bare_total));
    println!("total median: tool {t:.0} ms, bare {b:.0} ms, ratio {:.3}", t / b);
}

fn observe(p: &rig::QemuPair) -> Observer {
    Observer::start(p).unwrap_or_else(|e| crate::die(&format!("cannot observe the pair: {e}")))
}

fn keep(t: &Timeline, pauses: &mut Vec<f64>, totals: &mut Vec<f64>) {
    if let (Some(pause), Some(total)) = (t.pause_ms(), t.total_ms()) {
        pauses.push(pause);
        totals.push(total);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
