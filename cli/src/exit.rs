//! Exit paths that do not come from a migration report: usage mistakes and invalid plans
//! (exit 2), written for people on stderr or as one JSON object on stdout. Every JSON
//! object this tool prints has `changed`, `failed`, `msg` and `rc` at the top level,
//! which is what Ansible's `changed_when`/`failed_when` read.

use std::ffi::OsString;

use clap::ValueEnum;
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

/// A usage mistake clap does not catch; returns exit code 2. With JSON output it is one
/// object with the keys every JSON answer has, so a playbook's `from_json` never meets
/// an empty stdout.
pub fn usage(output: Output, msg: &str) -> i32 {
    match output {
        Output::Human => eprintln!("vfio-migrate: {msg}"),
        _ => print_usage_json(msg),
    }
    ExitStatus::InvalidPlan as i32
}

fn print_usage_json(msg: &str) {
    print_json(&serde_json::json!({
        "failed": true,
        "changed": false,
        "rc": ExitStatus::InvalidPlan as i32,
        "msg": msg,
    }));
}

/// A command line clap refused, or a request for help or the version; returns the exit
/// code. Help and the version stay text on stdout (exit 0). A mistake is clap's text on
/// stderr, as usual, and, when `args` ask for JSON output, also one JSON object on
/// stdout: a caller that asked for JSON parses stdout whatever went wrong, and clap
/// alone would leave it empty.
pub fn clap_error(error: &clap::Error, args: &[OsString]) -> i32 {
    // Printing can only fail on a closed stream, and the exit code still says it all.
    let _ = error.print();
    let code = error.exit_code();
    if error.use_stderr() && json_requested(args) {
        print_usage_json(&clap_message(error));
    }
    code
}

/// The first paragraph of clap's message on one line, without its `error: ` label and
/// without the tips and usage that follow: "unexpected argument '--frobnicate' found",
/// "the following required arguments were not provided: <PLAN>".
fn clap_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = first.join(" ");
    match line.strip_prefix("error: ").unwrap_or(&line) {
        "" => "invalid usage (see --help)".to_string(),
        msg => msg.to_string(),
    }
}

/// Whether the command line asks for JSON or NDJSON output, read without clap (which
/// just refused it): `--output json`, `--output=json`, `-o json`, `-ojson`, `-o=json`,
/// or `-o` at the end of a cluster of short flags (`-qo json`). Stops at `--`, after
/// which everything is a plan path.
pub fn json_requested(args: &[OsString]) -> bool {
    let is_json = |value: &str| matches!(Output::from_str(value, false), Ok(Output::Json | Output::Ndjson));
    let mut rest = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = rest.next() {
        if arg == "--" {
            return false;
        }
        let value = if arg == "--output" {
            rest.next().map(|v| v.into_owned())
        } else if let Some(value) = arg.strip_prefix("--output=") {
            Some(value.to_string())
        } else if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.starts_with('-')) {
            match shorts.split_once('o') {
                Some((_, "")) => rest.next().map(|v| v.into_owned()),
                Some((_, attached)) => Some(attached.strip_prefix('=').unwrap_or(attached).to_string()),
                None => None,
            }
        } else {
            None
        };
        if value.as_deref().is_some_and(is_json) {
            return true;
        }
    }
    false
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

#[cfg(test)]
mod tests {
    use super::json_requested;

    fn asks_json(line: &str) -> bool {
        let args: Vec<std::ffi::OsString> = std::iter::once("vfio-migrate")
            .chain(line.split_whitespace())
            .map(Into::into)
            .collect();
        json_requested(&args)
    }

    #[test]
    fn every_spelling_of_json_output_is_recognised() {
        for line in [
            "--output json x",
            "--output=json x",
            "-o json x",
            "-ojson x",
            "-o=json x",
            "-qo json x",
            "-qojson x",
            "check x --output ndjson",
        ] {
            assert!(asks_json(line), "{line}");
        }
    }

    #[test]
    fn other_outputs_and_arguments_after_the_separator_are_not_a_request_for_json() {
        for line in [
            "x",
            "--output human x",
            "-o yaml x",
            "-q x",
            "-- --output json",
            "--output",
        ] {
            assert!(!asks_json(line), "{line}");
        }
    }
}
