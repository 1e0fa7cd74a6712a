//! The pause must not grow: the converging workload (256 MiB dirtied at 50 MiB/s over a
//! 128 MiB/s link) migrated in turn by the tool, by the bare client, and by the bare
//! client holding the guest at `pre-switchover` as the tool does (so that what holding
//! costs by itself is told apart from what the tool adds); the guest's pause (`STOP` to
//! `RESUME`) and the whole migration on QEMU's timestamps, and the tool's CPU time and
//! peak memory.

use std::path::Path;
use std::time::Duration;

use crate::observe::{Observer, PauseParts, Timeline};
use crate::{child, median, pair, peers, plan};

const MIB: u64 = 1024 * 1024;
/// The tool's median pause may be this much above the bare client's.
const PAUSE_SLACK_MS: f64 = 2.0;

/// `rounds` rounds, each a run of the tool, of the bare client, and of the bare client
/// holding the guest at `pre-switchover`.
pub fn compare(bin: &Path, rounds: usize) {
    println!(
        "== converging: 256 MiB dirtied at 50 MiB/s over 128 MiB/s; tool vs bare client vs bare client held at pre-switchover, {rounds} rounds"
    );
    let (mut tool, mut bare, mut held) = (Vec::new(), Vec::new(), Vec::new());
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
            "tool run {}: rc {}, total {}, pause {}; CPU {cpu:.3}s = {:.2}% of a core; ru_maxrss {:.1} MiB, VmHWM run {} guardian {}, RssAnon run {} guardian {}, threads {}",
            i + 1,
            r.code,
            ms(t.total_ms()),
            ms(t.pause_ms()),
            cpu / r.wall.as_secs_f64() * 100.0,
            r.max_rss_kib as f64 / 1024.0,
            mib(r.hwm_kib),
            mib(r.guardian_hwm_kib),
            mib(r.anon_kib),
            mib(r.guardian_anon_kib),
            r.threads.map_or("-".into(), |n| n.to_string()),
        );
        println!("  {}", parts_line(&t));
        tool.push(t);
        drop(p);
        if let Some(t) = run_bare("bare", i, peers::bare) {
            bare.push(t);
        }
        if let Some(t) = run_bare("held bare", i, peers::bare_held) {
            held.push(t);
        }
    }
    let tool = Summary::of(&tool);
    let bare = Summary::of(&bare);
    let held = Summary::of(&held);
    println!(
        "pause median: tool {:.1} ms (n={}), bare {:.1} ms (n={}), held bare {:.1} ms (n={})",
        tool.pause, tool.n, bare.pause, bare.n, held.pause, held.n
    );
    let within = |a: f64, b: f64| if a <= b + PAUSE_SLACK_MS { "is" } else { "is NOT" };
    println!(
        "the tool {} within {PAUSE_SLACK_MS} ms of bare ({:+.1} ms); the tool {} within {PAUSE_SLACK_MS} ms of held bare ({:+.1} ms); holding costs bare {:+.1} ms",
        within(tool.pause, bare.pause),
        tool.pause - bare.pause,
        within(tool.pause, held.pause),
        tool.pause - held.pause,
        held.pause - bare.pause,
    );
    for (name, side) in [("tool", &tool), ("bare", &bare), ("held bare", &held)] {
        println!("pause parts, medians (ms): {name}: {}", side.parts);
    }
    println!(
        "RAM sent paused, median: tool {:.2} MiB, bare {:.2} MiB, held bare {:.2} MiB; pause per MiB paused: tool {:.2} ms, bare {:.2} ms, held bare {:.2} ms",
        tool.downtime_mib,
        bare.downtime_mib,
        held.downtime_mib,
        tool.pause / tool.downtime_mib,
        bare.pause / bare.downtime_mib,
        held.pause / held.downtime_mib
    );
    println!(
        "total median: tool {:.0} ms, bare {:.0} ms, held bare {:.0} ms; tool / bare {:.3}",
        tool.total,
        bare.total,
        held.total,
        tool.total / bare.total
    );
}

/// One run of a bare client on a fresh pair; `None` when it did not migrate.
fn run_bare(
    name: &str,
    i: usize,
    client: fn(&rig::QemuPair, u64, Duration) -> Result<bool, String>,
) -> Option<Timeline> {
    let p = pair(256, 50);
    let observer = observe(&p);
    let migrated = client(&p, 128 * MIB, Duration::from_secs(60));
    let t = observer.finish(Duration::from_millis(500));
    match migrated {
        Ok(true) => {
            println!(
                "{name} run {}: total {}, pause {}",
                i + 1,
                ms(t.total_ms()),
                ms(t.pause_ms())
            );
            println!("  {}", parts_line(&t));
            Some(t)
        }
        Ok(false) => {
            eprintln!("bench: the {name} migration did not finish");
            None
        }
        Err(e) => {
            eprintln!("bench: {name} migration failed: {e}");
            None
        }
    }
}

/// The medians of one side's runs that finished.
struct Summary {
    n: usize,
    pause: f64,
    total: f64,
    downtime_mib: f64,
    parts: String,
}

impl Summary {
    fn of(runs: &[Timeline]) -> Summary {
        let done: Vec<&Timeline> = runs
            .iter()
            .filter(|t| t.pause_ms().is_some() && t.total_ms().is_some())
            .collect();
        let m = |f: &dyn Fn(&Timeline) -> Option<f64>| {
            let v: Vec<f64> = done.iter().filter_map(|t| f(t)).collect();
            (!v.is_empty()).then(|| median(v))
        };
        let part = |f: fn(&PauseParts) -> Option<f64>| m(&|t| t.pause_parts().as_ref().and_then(f));
        let parts = PauseParts {
            to_gate: part(|p| p.to_gate),
            gate: part(|p| p.gate),
            to_source_done: part(|p| p.to_source_done),
            to_destination_done: part(|p| p.to_destination_done),
            to_resume: part(|p| p.to_resume),
        };
        Summary {
            n: done.len(),
            pause: m(&Timeline::pause_ms).unwrap_or(f64::NAN),
            total: m(&Timeline::total_ms).unwrap_or(f64::NAN),
            downtime_mib: m(&|t| t.downtime_bytes.map(|b| b as f64 / MIB as f64)).unwrap_or(f64::NAN),
            parts: describe(&parts),
        }
    }
}

/// One run's pause cut into its steps, and the RAM sent while paused.
fn parts_line(t: &Timeline) -> String {
    let parts = t.pause_parts().map_or("-".into(), |p| describe(&p));
    let paused = t
        .downtime_bytes
        .map_or("-".into(), |b| format!("{:.2} MiB", b as f64 / MIB as f64));
    format!("{parts}; RAM sent paused {paused}")
}

fn describe(p: &PauseParts) -> String {
    let v = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}"));
    format!(
        "STOP→pre-switchover {}, gate {}, →source completed {}, →destination completed {}, →RESUME {}",
        v(p.to_gate),
        v(p.gate),
        v(p.to_source_done),
        v(p.to_destination_done),
        v(p.to_resume)
    )
}

fn observe(p: &rig::QemuPair) -> Observer {
    Observer::start(p).unwrap_or_else(|e| crate::die(&format!("cannot observe the pair: {e}")))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}
