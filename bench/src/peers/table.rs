//! The markdown tables: medians per strategy, then the tool's total time as a ratio of
//! each peer's, and whether the "done when" holds on each workload.

use std::time::Duration;

use super::{Outcome, Strategy, STRATEGIES};
use crate::median;

/// Median total and pause over the runs that finished, and how many did.
pub fn cell(outcomes: &[Outcome], cap: Duration) -> String {
    let done: Vec<&Outcome> = outcomes.iter().filter(|o| o.total_ms.is_some()).collect();
    let n = outcomes.len();
    if done.is_empty() {
        return format!("not done in {} s ({n} of {n})", cap.as_secs());
    }
    let total = median(done.iter().filter_map(|o| o.total_ms).collect());
    let pause = median(done.iter().filter_map(|o| o.pause_ms).collect());
    let range = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let (lo, hi) = range(done.iter().filter_map(|o| o.total_ms).collect());
    let missing = match done.len() == n {
        true => String::new(),
        false => format!("; {} of {n} not done in {} s", n - done.len(), cap.as_secs()),
    };
    format!(
        "{:.1} s ({:.1}–{:.1}), pause {pause:.0} ms{missing}",
        total / 1000.0,
        lo / 1000.0,
        hi / 1000.0
    )
}

/// The tool's median total over a peer's: `None` when neither finished; a bound when
/// only the tool did (the peer took longer than the cap).
fn ratio(tool: &[Outcome], peer: &[Outcome], cap: Duration) -> String {
    let finished = |o: &[Outcome]| {
        let v: Vec<f64> = o.iter().filter_map(|o| o.total_ms).collect();
        (!v.is_empty()).then(|| median(v))
    };
    match (finished(tool), finished(peer)) {
        (Some(t), Some(p)) => format!("{:.2}", t / p),
        (Some(t), None) => format!("< {:.2}", t / cap.as_secs_f64() / 1000.0),
        _ => "—".into(),
    }
}

/// Prints the results: `results[workload][strategy]`.
pub fn print(workloads: &[&str], results: &[Vec<Vec<Outcome>>], cap: Duration) {
    let header: Vec<&str> = STRATEGIES.iter().map(|s| s.name()).collect();
    println!(
        "\n| workload (working set @ dirty rate, link) | {} |",
        header.join(" | ")
    );
    println!("|---|{}", "---|".repeat(STRATEGIES.len()));
    for (w, name) in workloads.iter().enumerate() {
        let cells: Vec<String> = results[w].iter().map(|o| cell(o, cap)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    let tool = index(Strategy::Tool);
    let peers: Vec<(usize, &Strategy)> = STRATEGIES
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != tool)
        .collect();
    println!(
        "\n| workload: the tool's median total time / the peer's | {} |",
        peers
            .iter()
            .map(|(_, s)| s.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(peers.len()));
    for (w, name) in workloads.iter().enumerate() {
        let ratios: Vec<String> = peers
            .iter()
            .map(|(i, _)| ratio(&results[w][tool], &results[w][*i], cap))
            .collect();
        println!("| {name} | {} |", ratios.join(" | "));
    }
    let proxmox = index(Strategy::ProxmoxNoXbzrle);
    println!("\ndone when: the tool finishes in at most half the time of Proxmox's policy with xbzrle off");
    for (w, name) in workloads.iter().enumerate() {
        let all_done = results[w][tool].iter().all(|o| o.total_ms.is_some());
        println!(
            "- {name}: ratio {}, the tool migrated {} of {} runs",
            ratio(&results[w][tool], &results[w][proxmox], cap),
            results[w][tool].iter().filter(|o| o.total_ms.is_some()).count(),
            results[w][tool].len(),
        );
        if !all_done {
            println!("  (a run that did not finish counts against the tool)");
        }
    }
}

fn index(s: Strategy) -> usize {
    STRATEGIES.iter().position(|x| *x == s).unwrap_or(0)
}
