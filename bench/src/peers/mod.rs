//! The peers side by side: the same QEMU pair migrated by this tool's "make it
//! converge" plans and by the peers' documented algorithms, taking turns in each
//! round, on the three workloads of issue #16. Every migration is measured by the
//! observer from QEMU's timestamps (total: the source's `setup` to the destination's
//! `RESUME`; pause: `STOP` to `RESUME`); one that has not finished at the cap is
//! cancelled and reported as not done. The two baselines that cannot finish on these
//! workloads (no orchestrator, Nova's first steps) run in the first round only.

mod none;
mod nova;
mod policy;
mod proxmox;
mod session;
mod table;
mod virsh;

use std::path::Path;
use std::time::Duration;

use rig::{Accel, GuestParams, PairOptions, QemuPair};

use crate::child;
use crate::observe::{Observer, Timeline};
use policy::Policy;
use session::End;

/// The guest's RAM (the rig's default), MiB.
const GUEST_MIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// One workload of the issue.
pub struct Workload {
    pub name: &'static str,
    wss_mb: u32,
    rate_mb: u32,
    link_mib: u64,
    dirty_ring: bool,
    /// The tool's `throttle` method.
    throttle: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "256 MiB @ 200 MiB/s, 128 MiB/s, no dirty ring (auto-converge)",
        wss_mb: 256,
        rate_mb: 200,
        link_mib: 128,
        dirty_ring: false,
        throttle: "auto-converge",
    },
    Workload {
        name: "512 MiB @ 400 MiB/s, 128 MiB/s, no dirty ring (auto-converge)",
        wss_mb: 512,
        rate_mb: 400,
        link_mib: 128,
        dirty_ring: false,
        throttle: "auto-converge",
    },
    Workload {
        name: "256 MiB @ 200 MiB/s, 100 MiB/s, dirty ring (dirty limit)",
        wss_mb: 256,
        rate_mb: 200,
        link_mib: 100,
        dirty_ring: true,
        throttle: "dirty-limit",
    },
];

/// The strategies, in the order they take turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Tool,
    ProxmoxNoXbzrle,
    Proxmox,
    Virsh,
    Nova,
    NoOrchestrator,
}

pub const STRATEGIES: &[Strategy] = &[
    Strategy::Tool,
    Strategy::ProxmoxNoXbzrle,
    Strategy::Proxmox,
    Strategy::Virsh,
    Strategy::Nova,
    Strategy::NoOrchestrator,
];

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Tool => "this tool",
            Strategy::ProxmoxNoXbzrle => "Proxmox's policy, xbzrle off",
            Strategy::Proxmox => "Proxmox's policy (xbzrle on)",
            Strategy::Virsh => "`virsh migrate --timeout 30`",
            Strategy::Nova => "Nova's downtime steps",
            Strategy::NoOrchestrator => "no orchestrator",
        }
    }

    /// Whether one round shows all there is: on these workloads the link is slower than
    /// the guest dirties, and neither Nova (50 ms for its first 150 s) nor QEMU's
    /// defaults throttle or allow more than 300 ms, so they run to the cap every time.
    /// They take part in the first round only, which keeps a run of the benchmark
    /// within its budget.
    fn once(self) -> bool {
        matches!(self, Strategy::Nova | Strategy::NoOrchestrator)
    }

    fn policy(self) -> Option<Box<dyn Policy>> {
        match self {
            Strategy::Tool => None,
            Strategy::ProxmoxNoXbzrle => Some(Box::new(proxmox::Proxmox::new(GUEST_MIB, false))),
            Strategy::Proxmox => Some(Box::new(proxmox::Proxmox::new(GUEST_MIB, true))),
            Strategy::Virsh => Some(Box::new(virsh::VirshTimeout::new(Duration::from_secs(30)))),
            Strategy::Nova => Some(Box::new(nova::Nova::new(GUEST_MIB))),
            Strategy::NoOrchestrator => Some(Box::new(none::NoOrchestrator)),
        }
    }
}

/// One migration's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whole migration, ms; `None` when it did not finish.
    pub total_ms: Option<f64>,
    pub pause_ms: Option<f64>,
}

/// Runs every strategy `runs` times on every workload and prints each run and the
/// tables. A migration still running after `cap` is cancelled.
pub fn side_by_side(bin: &Path, runs: usize, cap: Duration) {
    println!(
        "== peers side by side: {} strategies, {runs} rounds, cap {} s",
        STRATEGIES.len(),
        cap.as_secs()
    );
    let only = std::env::var("BENCH_ONLY").ok();
    let workloads: Vec<&Workload> = WORKLOADS
        .iter()
        .filter(|w| only.as_deref().is_none_or(|o| w.name.contains(o)))
        .collect();
    let mut results: Vec<Vec<Vec<Outcome>>> = vec![vec![Vec::new(); STRATEGIES.len()]; workloads.len()];
    for (w, workload) in workloads.iter().enumerate() {
        for round in 0..runs {
            for (s, strategy) in STRATEGIES.iter().enumerate() {
                if round > 0 && strategy.once() {
                    continue;
                }
                let outcome = one(bin, workload, *strategy, cap);
                println!(
                    "{} | round {} | {}: {}",
                    workload.name,
                    round + 1,
                    strategy.name(),
                    table::cell(std::slice::from_ref(&outcome), cap)
                );
                results[w][s].push(outcome);
            }
        }
    }
    let names: Vec<&str> = workloads.iter().map(|w| w.name).collect();
    table::print(&names, &results, cap);
}

fn one(bin: &Path, w: &Workload, strategy: Strategy, cap: Duration) -> Outcome {
    let pair = match QemuPair::start(&PairOptions {
        guest: GuestParams {
            wss_mb: w.wss_mb,
            rate_mb: w.rate_mb,
        },
        accel: Accel::Auto,
        dirty_ring: w.dirty_ring,
        ..PairOptions::default()
    }) {
        Ok(p) => p,
        Err(e) => crate::die(&format!("cannot start a QEMU pair: {e}")),
    };
    let observer = match Observer::start(&pair) {
        Ok(o) => o,
        Err(e) => crate::die(&format!("cannot observe the pair: {e}")),
    };
    let finished = match strategy.policy() {
        None => {
            let r = child::run(bin, pair.dir(), &tool_plan(&pair, w, cap));
            if r.code != 0 {
                eprintln!(
                    "bench: the tool ended rc {}: {}",
                    r.code,
                    r.report["error"].as_str().unwrap_or("-")
                );
            }
            r.code == 0
        }
        Some(mut policy) => match session::run(&pair, policy.as_mut(), w.link_mib * MIB, cap) {
            Ok(End::Migrated) => true,
            Ok(End::Capped) => false,
            Err(e) => {
                eprintln!("bench: {}: {e}", strategy.name());
                false
            }
        },
    };
    let timeline: Timeline = observer.finish(Duration::from_millis(500));
    Outcome {
        total_ms: timeline.total_ms().filter(|_| finished),
        pause_ms: timeline.pause_ms().filter(|_| finished),
    }
}

/// The plan a new user writes from `docs/plan.md` to make it converge.
fn tool_plan(pair: &QemuPair, w: &Workload, cap: Duration) -> String {
    format!(
        "[vm]\nname = \"bench\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\nlisten = \"tcp:127.0.0.1:{}\"\n[limits]\nmax_bandwidth = \"{}MiB/s\"\ndeadline = \"{}s\"\n[policy]\nescalation = [\"throttle\", \"abort\"]\nthrottle = \"{}\"\n",
        pair.source.qmp_socket.display(),
        pair.destination.qmp_socket.display(),
        pair.migration_port,
        w.link_mib,
        cap.as_secs(),
        w.throttle
    )
}

/// The bare client other sections compare with: plain `migrate` with QEMU's defaults
/// and the link capped, resumed on the destination's `completed`. `Ok(true)` when it
/// migrated within `cap`.
pub fn bare(pair: &QemuPair, max_bandwidth: u64, cap: Duration) -> Result<bool, String> {
    session::run(pair, &mut none::NoOrchestrator, max_bandwidth, cap).map(|end| end == End::Migrated)
}

/// The bare client holding the guest at `pre-switchover` and letting it go at once:
/// the tool's shape of switchover, without the tool.
pub fn bare_held(pair: &QemuPair, max_bandwidth: u64, cap: Duration) -> Result<bool, String> {
    session::run(pair, &mut none::HeldAtSwitchover, max_bandwidth, cap).map(|end| end == End::Migrated)
}
