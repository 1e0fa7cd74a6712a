//! `[policy]`: what to do when a migration does not converge, and at the deadline.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::reader::{Mistakes, TableReader};

/// What `on_deadline` may be: the steps that end a migration.
const DEADLINE_STEPS: &[(&str, Step)] = &[("abort", Step::Abort), ("force-downtime", Step::ForceDowntime)];

pub(super) fn read_policy(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Policy> {
    const KEYS: &[&str] = &[
        "escalation",
        "on_deadline",
        "throttle",
        "dirty_limit",
        "throttle_initial",
        "throttle_increment",
        "throttle_max",
        "force",
    ];
    let r = TableReader::new("policy", t, s, KEYS);
    let d = Policy::default();
    let escalation = if r.has("escalation") {
        read_escalation(&r, m)
    } else {
        Some(d.escalation.clone())
    };
    let on_deadline = r.choice(m, "on_deadline", DEADLINE_STEPS);
    let throttle = r.choice(m, "throttle", ThrottleMethod::WORDS);
    let dirty_limit = r.rate(m, "dirty_limit", "50MiB/s");
    let initial = r.integer(m, "throttle_initial", 1..=99);
    let increment = r.integer(m, "throttle_increment", 1..=100);
    let max = r.integer(m, "throttle_max", 1..=99);
    let force = r.choice(m, "force", ForceMethod::WORDS);
    let failed = r.failed() || escalation.is_none();
    r.finish(m);
    if failed {
        return None;
    }
    Some(Policy {
        escalation: escalation?,
        on_deadline: on_deadline.map_or(d.on_deadline, |a| a.value),
        throttle: throttle.map_or(d.throttle, |a| a.value),
        dirty_limit: dirty_limit.map_or(d.dirty_limit, |a| a.value),
        throttle_initial: initial.map_or(d.throttle_initial, |a| a.value as u8),
        throttle_increment: increment.map_or(d.throttle_increment, |a| a.value as u8),
        throttle_max: max.map_or(d.throttle_max, |a| a.value as u8),
        force: force.map_or(d.force, |a| a.value),
    })
}

fn read_escalation(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Vec<Step>> {
    let (items, span) = r.array(m, "escalation")?;
    let hint = "list steps in order, e.g. `escalation = [\"throttle\", \"force-downtime\", \"abort\"]`";
    if items.is_empty() {
        m.push(Diagnostic::new("policy.escalation", span, "must list at least one step").hint(hint));
        return None;
    }
    let mut steps = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("policy.escalation[{i}]");
        let step = match item.get_ref() {
            DeValue::String(s) => Step::WORDS
                .iter()
                .find(|(n, _)| *n == s.as_ref())
                .map(|(_, st)| *st),
            _ => None,
        };
        let Some(step) = step else {
            m.push(
                Diagnostic::new(key, item.span(), "unknown step")
                    .hint("steps are \"throttle\", \"force-downtime\" and \"abort\""),
            );
            ok = false;
            continue;
        };
        if steps.contains(&step) {
            m.push(
                Diagnostic::new(
                    key,
                    item.span(),
                    format!("step \"{}\" is listed twice", step.name()),
                )
                .hint(hint),
            );
            ok = false;
        } else if steps.contains(&Step::Abort) {
            m.push(
                Diagnostic::new(
                    key,
                    item.span(),
                    format!(
                        "step \"{}\" comes after \"abort\" and would never run",
                        step.name()
                    ),
                )
                .hint("put \"abort\" last"),
            );
            ok = false;
        }
        steps.push(step);
    }
    ok.then_some(steps)
}
