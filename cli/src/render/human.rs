//! Text for people: one line per notable event, and the final report.

use std::fmt::Write as _;

use engine::policy::Action;
use engine::report::ActionRecord;
use engine::{EngineEvent, Outcome, Report, RunningOn};
use plans::units::format_bytes;

/// `1.5s`, `300ms`.
pub fn ms_text(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{:.0}s", ms as f64 / 1000.0)
    } else if ms >= 1000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// `128MiB/s`.
pub fn rate_text(bytes_per_sec: u64) -> String {
    format!("{}/s", format_bytes(bytes_per_sec))
}

/// What was done, in a few words.
pub fn action_text(a: &ActionRecord) -> String {
    let what = match &a.action {
        Action::Throttle { throttle } => match throttle {
            // Sized throttles set all three so that QEMU lands on `max` at its next trigger.
            engine::driver::Throttle::AutoConverge { initial, max, .. } if initial == max => {
                format!("auto-converge throttle to {max}%")
            }
            engine::driver::Throttle::AutoConverge {
                initial,
                increment,
                max,
            } => {
                format!("auto-converge throttle {initial}%+{increment}% up to {max}%")
            }
            engine::driver::Throttle::DirtyLimit { mib_per_sec } => {
                format!("vCPU dirty limit {mib_per_sec}MiB/s")
            }
        },
        Action::RaiseDowntime { to_ms } => format!("downtime limit raised to {}", ms_text(*to_ms)),
        Action::StopGuest => "guest stopped to finish".to_string(),
        Action::Abort => "migration cancelled".to_string(),
    };
    let mut text = format!(
        "pass {} (+{}): {}: {what} — {}",
        a.pass,
        ms_text(a.at.as_millis() as u64),
        a.step,
        a.reason
    );
    for s in &a.skipped {
        let _ = write!(text, " [skipped {s}]");
    }
    text
}

/// A line for stderr, or `None` for events too frequent to print line by line.
pub fn event_line(event: &EngineEvent) -> Option<String> {
    match event {
        EngineEvent::Phase { phase } => Some(format!("vfio-migrate: {}", phase.name())),
        EngineEvent::Facts { facts } => Some(format!(
            "vfio-migrate: source QEMU {} ({}), destination QEMU {}",
            facts.source.version,
            if facts.source.kvm { "KVM" } else { "TCG" },
            facts.destination.version
        )),
        EngineEvent::NotReady { problems } => Some(
            problems
                .iter()
                .map(|p| format!("vfio-migrate: not ready: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        EngineEvent::Pass(p) => Some(format!(
            "vfio-migrate: pass {}: remaining {}, dirty {}, bandwidth {}",
            p.pass,
            format_bytes(p.remaining),
            rate_text(p.dirty_rate),
            rate_text(p.bandwidth)
        )),
        EngineEvent::Action(a) => Some(format!("vfio-migrate: action: {}", action_text(a))),
        EngineEvent::Note { message } => Some(format!("vfio-migrate: note: {message}")),
        EngineEvent::Device { id, state, at_ms } => Some(format!(
            "vfio-migrate: device {id}: {state} (+{})",
            ms_text(*at_ms)
        )),
        EngineEvent::Progress(_) | EngineEvent::SettingsSaved { .. } => None,
    }
}

/// The outcome as the JSON report spells it (`migrated`, `aborted`, `failed`), so people
/// and scripts read the same word.
pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Migrated => "migrated",
        Outcome::Aborted => "aborted",
        Outcome::Failed => "failed",
    }
}

/// The report's first line: how it ended and where the VM runs. The VM's name is the
/// plan's, verbatim: operators search for it, and names are case-sensitive.
pub fn headline(result: Outcome, running_on: RunningOn, vm: &str) -> String {
    match (result, running_on) {
        (Outcome::Migrated, _) => format!("migrated: {vm} now runs on the destination"),
        (_, RunningOn::Source) => {
            format!("not migrated ({}): {vm} runs on the source", outcome_word(result))
        }
        (_, RunningOn::Destination) => {
            format!("{}: {vm} runs on the destination", outcome_word(result))
        }
        (_, RunningOn::Unknown) => format!("ATTENTION: where {vm} runs could not be confirmed"),
    }
}

/// The final report as text.
pub fn report_text(r: &Report) -> String {
    let mut t = String::new();
    let vm = &r.vm;
    let head = match (r.result, r.changed, r.rc) {
        (Outcome::Migrated, false, 0) => {
            format!("already migrated: {vm} runs on the destination; nothing was changed")
        }
        (_, _, 3) => match r.running_on {
            RunningOn::Source => format!("not ready, nothing was changed: {vm} runs on the source"),
            RunningOn::Destination => format!("not ready, nothing was changed: {vm} runs on the destination"),
            RunningOn::Unknown => {
                format!(
                    "not ready, nothing was changed: where {vm} runs is not known (a side did not answer)"
                )
            }
        },
        _ => headline(r.result, r.running_on, vm),
    };
    let _ = writeln!(t, "{head} (exit {})", r.rc);
    if let Some(e) = &r.error {
        let _ = writeln!(t, "  why:        {e}");
    }
    let mut timing = format!("  time:       total {}", ms_text(r.total_ms));
    if let Some(s) = r.setup_ms {
        let _ = write!(timing, ", setup {}", ms_text(s));
    }
    if let Some(d) = r.downtime_ms.filter(|_| r.result == Outcome::Migrated) {
        let _ = write!(timing, ", downtime {} (QEMU)", ms_text(d));
    }
    if let Some(p) = r.paused_ms {
        let _ = write!(timing, ", guest paused {} (measured)", ms_text(p));
    }
    let _ = writeln!(t, "{timing}");
    let _ = writeln!(
        t,
        "  data:       {} sent in {} passes{}",
        format_bytes(r.transferred_bytes),
        r.passes,
        r.peak_dirty_rate
            .map_or(String::new(), |d| format!(", peak dirty rate {}", rate_text(d)))
    );
    if let Some(us) = r.switchover_latency_us {
        let _ = writeln!(
            t,
            "  switchover: continued {:.2}ms after QEMU paused at pre-switchover",
            us as f64 / 1000.0
        );
    }
    if let Some(at) = r.gate_opened_ms {
        let _ = writeln!(t, "  devices:    all saving {} after migrate", ms_text(at));
    }
    for d in &r.devices {
        let states: Vec<String> = d
            .timeline
            .iter()
            .map(|c| format!("{} +{}", c.state, ms_text(c.at_ms)))
            .collect();
        let _ = writeln!(
            t,
            "  device {}: {}",
            d.id,
            if states.is_empty() {
                "no state events".to_string()
            } else {
                states.join(" → ")
            }
        );
    }
    if let Some(v) = r.vfio_transferred_bytes.filter(|v| *v > 0) {
        let _ = writeln!(t, "  vfio:       {} of device state sent", format_bytes(v));
    }
    for a in &r.actions {
        let _ = writeln!(t, "  action:     {}", action_text(a));
    }
    if let (Some(s), Some(d)) = (&r.source_state, &r.destination_state) {
        let _ = writeln!(t, "  state:      source {s}, destination {d}");
    }
    if let Some(n) = &r.notify {
        let _ = writeln!(
            t,
            "  webhooks:   {} sent, {} failed, {} dropped",
            n.sent, n.failed, n.dropped
        );
    }
    t.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_kept_on_the_source_is_named_as_the_plan_spells_it() {
        assert_eq!(
            headline(Outcome::Aborted, RunningOn::Source, "DB-Primary"),
            "not migrated (aborted): DB-Primary runs on the source"
        );
        assert_eq!(
            headline(Outcome::Failed, RunningOn::Source, "DB-Primary"),
            "not migrated (failed): DB-Primary runs on the source"
        );
    }

    #[test]
    fn a_failure_that_left_the_vm_on_the_destination_keeps_its_name() {
        assert_eq!(
            headline(Outcome::Failed, RunningOn::Destination, "DB-Primary"),
            "failed: DB-Primary runs on the destination"
        );
    }

    #[test]
    fn a_migrated_vm_and_an_unconfirmed_one_keep_their_names() {
        assert_eq!(
            headline(Outcome::Migrated, RunningOn::Destination, "DB-Primary"),
            "migrated: DB-Primary now runs on the destination"
        );
        assert_eq!(
            headline(Outcome::Aborted, RunningOn::Unknown, "DB-Primary"),
            "ATTENTION: where DB-Primary runs could not be confirmed"
        );
    }

    #[test]
    fn outcome_words_are_the_json_reports_words() {
        for o in [Outcome::Migrated, Outcome::Aborted, Outcome::Failed] {
            let json = serde_json::to_value(o).expect("an outcome serializes");
            assert_eq!(json, outcome_word(o));
        }
    }
}
