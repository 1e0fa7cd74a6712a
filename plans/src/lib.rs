//! # vfio-migrate plans
//!
//! A plan says which VM moves where, with which VFIO devices, within which limits, and
//! what to do when the migration does not converge. This crate reads a plan from TOML,
//! checks it completely (every mistake, each with file, line, column, key and a hint) and
//! yields a [`Plan`] the engine can trust.
//!
//! ```
//! let text = r#"
//! [vm]
//! name = "demo"
//! [source]
//! qmp = "unix:/run/src.qmp"
//! [destination]
//! qmp = "unix:/run/dst.qmp"
//! listen = "tcp:127.0.0.1:49152"
//! "#;
//! let plan = plans::load("plan.toml", text).expect("valid plan");
//! assert_eq!(plan.vm.name, "demo");
//! assert_eq!(plan.limits.downtime.as_millis(), 300);
//! ```

pub mod defaults;
pub mod diagnostic;
mod excerpt;
mod input;
pub mod model;
mod parse;
mod reader;
pub mod redact;
pub mod schema;
pub mod text;
pub mod units;
mod validate;

pub use diagnostic::{Diagnostic, PlanErrors, PlanSource};
pub use input::{load_bytes, load_file, MAX_PLAN_BYTES};
pub use model::*;
pub use parse::{is_variable_name, webhook_url_problem};
pub use redact::redact;
pub use validate::QEMU_MAX_DOWNTIME_MS;

use toml::de::DeTable;

use reader::Mistakes;

/// Reads and checks a plan. `name` is how the plan is named in messages (its path).
/// A file is read with [`load_file`], bytes of unknown encoding with [`load_bytes`].
pub fn load(name: &str, text: &str) -> Result<Plan, PlanErrors> {
    if let Some(refusal) = input::check_size(name, text) {
        // Too large a text is not kept: an error never shows more than it must.
        let kept = if refusal.span.is_some() { text } else { "" };
        return Err(PlanErrors {
            source: PlanSource::new(name, kept),
            diagnostics: vec![refusal],
        });
    }
    let source = PlanSource::new(name, text);
    let mut mistakes = Mistakes::default();
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        mistakes.push(
            Diagnostic::new("", span, format!("TOML syntax: {}", e.message().trim()))
                .hint("see https://toml.io for the syntax"),
        );
    }
    if mistakes.list.is_empty() {
        let span = root.span();
        let (plan, spans) = parse::read_plan(root.get_ref(), span, &mut mistakes);
        if let Some(plan) = plan {
            if mistakes.list.is_empty() {
                validate::check(&plan, &spans, &mut mistakes);
                if mistakes.list.is_empty() {
                    return Ok(plan);
                }
            }
        }
    }
    let mut diagnostics = mistakes.list;
    diagnostics.sort_by_key(|d| (d.start(), d.key.clone()));
    if diagnostics.is_empty() {
        // read_plan returns no plan only with a mistake recorded; keep the invariant visible.
        diagnostics.push(Diagnostic::new("", 0..0, "the plan could not be read"));
    }
    Err(PlanErrors { source, diagnostics })
}
