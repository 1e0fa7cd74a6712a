//! Exit paths that do not come from a migration report: usage mistakes and invalid plans
//! (exit 2), written for people on stderr or as one JSON object on stdout.

use engine::report::ExitStatus;
use plans::diagnostic::LocatedDiagnostic;

use crate::args::Output;
use crate::render::print_json;

/// Reports an invalid plan (already printed for people) and returns exit code 2.
pub fn invalid(output: Output, msg: &str, errors: &[LocatedDiagnostic]) -> i32 {
    match output {
        Output::Human => {
            if errors.is_empty() {
                eprintln!("vfio-migrate: {msg}");
            }
        }
        _ => print_json(&serde_json::json!({
            "failed": true,
            "changed": false,
            "rc": ExitStatus::InvalidPlan as i32,
            "result": "invalid",
            "msg": msg,
            "errors": errors,
        })),
    }
    ExitStatus::InvalidPlan as i32
}

/// Why `vfio-migrate demo` does nothing in a build without the `demo` feature. The
/// feature is off by default because the demo's guest is built with gcc and binutils,
/// which installing the tool should not need.
#[cfg(not(feature = "demo"))]
pub const NO_DEMO: &str = "this build has no demo: it was built without the `demo` feature.\n\
    Build one with `cargo build --release -p vfio-migrate --features demo` (needs gcc and binutils),\n\
    or run `scripts/demo` from the source tree, which builds it with the feature and installs what it needs.";

/// A usage mistake clap does not catch; returns exit code 2.
pub fn usage(msg: &str) -> i32 {
    eprintln!("vfio-migrate: {msg}");
    ExitStatus::InvalidPlan as i32
}

/// Hosts not ready before anything was contacted (e.g. another run holds the VM);
/// returns exit code 3.
pub fn not_ready(output: Output, msg: &str) -> i32 {
    before_contact(output, ExitStatus::NotReady, msg)
}

/// Something only a person can decide, found before anything was changed; returns
/// exit code 4.
pub fn needs_attention(output: Output, msg: &str) -> i32 {
    before_contact(output, ExitStatus::NeedsAttention, msg)
}

/// A run that ends before the engine reported on it: says why, for people on stderr or
/// as one JSON object with the keys Ansible reads.
fn before_contact(output: Output, status: ExitStatus, msg: &str) -> i32 {
    match output {
        Output::Human if status == ExitStatus::NeedsAttention => eprintln!("vfio-migrate: ATTENTION: {msg}"),
        Output::Human => eprintln!("vfio-migrate: not ready: {msg}"),
        _ => print_json(&serde_json::json!({
            "failed": true,
            "changed": false,
            "rc": status.code(),
            "result": "failed",
            "running_on": "unknown",
            "msg": msg,
            "error": msg,
        })),
    }
    status.code()
}
