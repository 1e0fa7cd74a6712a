//! `vfio-migrate report FILE.json --html OUT [--svg OUT]`: draws a saved report, so a
//! play that registered a run's JSON can render it later, anywhere.

use std::io::Read;
use std::path::Path;

use crate::args::Output;
use crate::chart::{Files, View};
use crate::exit;
use crate::render::print_json;

/// The largest report read: far above any real one (samples are bounded), low enough
/// that a wrong file is refused rather than read whole.
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Reads the report at `input` (`-`: stdin), draws it into `files`; exit 0 when every
/// drawing was written, 2 when the input is no report or a file cannot be written.
pub fn run(input: &Path, files: &Files, output: Output) -> i32 {
    let text = match read(input) {
        Ok(text) => text,
        Err(e) => return exit::usage(output, &e),
    };
    let view = match View::from_json(&text) {
        Ok(view) => view,
        Err(e) => return exit::usage(output, &format!("{}: {e}", input.display())),
    };
    match files.write(&view) {
        Ok(paths) => {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let msg = format!("drew the report of {} into {}", view.vm, names.join(", "));
            match output {
                Output::Human => println!("{msg}"),
                _ => print_json(&serde_json::json!({
                    "failed": false, "changed": false, "rc": 0, "msg": msg, "files": names,
                })),
            }
            0
        }
        Err(e) => exit::usage(output, &e),
    }
}

fn read(input: &Path) -> Result<String, String> {
    let mut text = String::new();
    let result = match input == Path::new("-") {
        true => std::io::stdin()
            .take(MAX_REPORT_BYTES + 1)
            .read_to_string(&mut text),
        false => {
            std::fs::File::open(input).and_then(|f| f.take(MAX_REPORT_BYTES + 1).read_to_string(&mut text))
        }
    };
    result.map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    match text.len() as u64 > MAX_REPORT_BYTES {
        true => Err(format!(
            "{}: larger than {} MiB, so not a report",
            input.display(),
            MAX_REPORT_BYTES >> 20
        )),
        false => Ok(text),
    }
}
