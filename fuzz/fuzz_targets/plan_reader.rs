//! The plan reader on arbitrary bytes: `plans::load_bytes`, as `vfio-migrate PLAN` reads
//! a file.
//!
//! It must never panic; a refused plan's mistakes point inside the text they were found
//! in; what an operator sees is bounded and holds no control character but newlines; a
//! plan that reads names nothing unprintable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use plans::diagnostic::MAX_LISTED;
use plans::text::{first_unprintable, is_unprintable};

/// The most one listed mistake may print: a message and a hint of 400 characters, each
/// escaped (at most 10 bytes a character), a 200-column source window and the rest.
const MAX_BYTES_PER_MISTAKE: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let errors = match plans::load_bytes("fuzz.toml", data) {
        Ok(plan) => {
            assert!(first_unprintable(&plan.vm.name).is_none(), "{:?}", plan.vm.name);
            for device in &plan.devices {
                assert!(first_unprintable(&device.id).is_none(), "{:?}", device.id);
            }
            if plan.source.qmp().is_some_and(|q| q.is_remote())
                || plan.destination.endpoint.qmp().is_some_and(|q| q.is_remote())
            {
                assert!(plan.security.remote_qmp, "a remote monitor without the opt-in");
            }
            let _ = serde_json::to_string(&plan);
            return;
        }
        Err(errors) => errors,
    };
    assert!(!errors.diagnostics.is_empty(), "refused without a mistake");
    let text = &errors.source.text;
    let lines = text.matches('\n').count() + 1;
    for d in &errors.diagnostics {
        if let Some(span) = &d.span {
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "{span:?} outside a text of {} bytes: {d:?}",
                text.len()
            );
        }
    }
    for located in errors.located() {
        if let (Some(line), Some(column)) = (located.line, located.column) {
            assert!(
                line >= 1 && line <= lines && column >= 1,
                "{line}:{column} of {lines} lines"
            );
        }
    }
    let shown = errors.to_string();
    assert!(
        shown.len() <= MAX_LISTED * MAX_BYTES_PER_MISTAKE,
        "{} bytes shown",
        shown.len()
    );
    if let Some(c) = shown.chars().find(|c| *c != '\n' && is_unprintable(*c)) {
        panic!("{c:?} printed raw in:\n{shown}");
    }
    let _ = errors.summary();
});
