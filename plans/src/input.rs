//! From a path or a buffer of bytes to plan text, refusing what is not a plan file
//! before the TOML reader sees it.
//!
//! Every refusal is a [`PlanErrors`] like any other plan mistake, so the command line
//! reports a directory, an unreadable or oversized file, an empty one and one that is not
//! UTF-8 the way it reports a misspelt key: exit 2, a message in our words, and a
//! position wherever the file has one.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::Utf8Error;

use crate::diagnostic::{Diagnostic, PlanErrors, PlanSource};
use crate::model::Plan;

/// The largest plan read, in bytes (1 MiB). The biggest useful plan is a few kilobytes;
/// the limit keeps a wrong path (a disk image, a log) from being read whole and echoed.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// Reads and checks the plan at `path`, named in messages as the path is written.
pub fn load_file(path: &Path) -> Result<Plan, PlanErrors> {
    let name = path.display().to_string();
    let bytes = read_bounded(path, &name).map_err(|d| refused(&name, d))?;
    load_bytes(&name, &bytes)
}

/// Reads and checks a plan from raw bytes: at most [`MAX_PLAN_BYTES`], UTF-8, not empty.
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<Plan, PlanErrors> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(refused(name, too_large(name, None)));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => crate::load(name, text),
        Err(e) => Err(not_utf8(name, bytes, e)),
    }
}

/// The mistake of a plan text that is too large or empty, if it is either; checked by
/// [`crate::load`] so every way in refuses the same.
pub(crate) fn check_size(name: &str, text: &str) -> Option<Diagnostic> {
    if text.len() > MAX_PLAN_BYTES {
        return Some(too_large(name, Some(text.len() as u64)));
    }
    if text.trim().is_empty() {
        return Some(
            Diagnostic::new("", 0..0, "the plan is empty")
                .hint("a plan needs at least [vm], [source] and [destination]; see examples/qmp-basic.toml"),
        );
    }
    None
}

/// Errors about a file whose text is not kept (none was read, or too much).
fn refused(name: &str, d: Diagnostic) -> PlanErrors {
    PlanErrors {
        source: PlanSource::new(name, ""),
        diagnostics: vec![d],
    }
}

/// Reads at most one byte more than [`MAX_PLAN_BYTES`], so a wrong path (a disk image,
/// `/dev/zero`) is refused without being read whole.
fn read_bounded(path: &Path, name: &str) -> Result<Vec<u8>, Diagnostic> {
    let cannot = |e: std::io::Error| Diagnostic::whole_file(format!("cannot read plan {name}: {e}"));
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.is_dir() {
        return Err(
            Diagnostic::whole_file(format!("{name} is a directory, not a plan file"))
                .hint("give the path of the plan's TOML file"),
        );
    }
    if meta.is_file() && meta.len() > MAX_PLAN_BYTES as u64 {
        return Err(too_large(name, Some(meta.len())));
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_PLAN_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(too_large(name, None));
    }
    Ok(bytes)
}

fn too_large(name: &str, size: Option<u64>) -> Diagnostic {
    let size = size.map_or_else(|| "more than 1 MiB".to_string(), |s| format!("{s} bytes"));
    Diagnostic::whole_file(format!(
        "{name} is {size}; a plan may be at most 1 MiB ({MAX_PLAN_BYTES} bytes)"
    ))
    .hint("a plan is a short TOML file: check that this is the plan you meant")
}

/// A plan that is not UTF-8: where the first bad byte is, and what the file looks like
/// it is instead when its start says so. The text is kept with the bad bytes replaced,
/// so the error can show the line and column of the first one.
fn not_utf8(name: &str, bytes: &[u8], e: Utf8Error) -> PlanErrors {
    let at = e.valid_up_to();
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (message, hint) = if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        (
            "the plan is not UTF-8: it starts with a UTF-16 byte-order mark".to_string(),
            "TOML plans are UTF-8: convert it, e.g. `iconv -f UTF-16 -t UTF-8`",
        )
    } else if e.error_len().is_none() {
        (
            format!("the plan is not UTF-8: it ends in the middle of a character (byte offset {at})"),
            "TOML plans are UTF-8: check that the file was written completely",
        )
    } else {
        (
            format!(
                "the plan is not UTF-8: byte 0x{:02X} at byte offset {at} is not valid UTF-8",
                bytes[at]
            ),
            "TOML plans are UTF-8: convert it, e.g. `iconv -f LATIN1 -t UTF-8`",
        )
    };
    // The replacement character stands where the first bad byte was.
    let span = at..at + char::REPLACEMENT_CHARACTER.len_utf8();
    PlanErrors {
        source: PlanSource::new(name, text),
        diagnostics: vec![Diagnostic::new("", span, message).hint(hint)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(e: PlanErrors) -> (String, Option<(usize, usize)>) {
        let located = e.located();
        assert_eq!(located.len(), 1, "{e}");
        let d = &located[0];
        (d.diagnostic.message.clone(), d.line.zip(d.column))
    }

    #[test]
    fn a_latin1_byte_is_reported_with_its_offset_line_and_column() {
        let bytes = b"[vm]\nname = \"caf\xe9\"\n";
        let (message, at) = only(load_bytes("p.toml", bytes).expect_err("refused"));
        assert_eq!(
            message,
            "the plan is not UTF-8: byte 0xE9 at byte offset 16 is not valid UTF-8"
        );
        assert_eq!(at, Some((2, 12)));
    }

    #[test]
    fn utf16_is_named() {
        let (message, at) = only(load_bytes("p.toml", b"\xff\xfe[\0v\0m\0]\0").expect_err("refused"));
        assert!(message.contains("UTF-16"), "{message}");
        assert_eq!(at, Some((1, 1)));
    }

    #[test]
    fn a_truncated_character_at_the_end_is_named() {
        let (message, _) = only(load_bytes("p.toml", b"# caf\xc3").expect_err("refused"));
        assert!(
            message.contains("ends in the middle of a character (byte offset 5)"),
            "{message}"
        );
    }

    #[test]
    fn more_than_a_mebibyte_is_refused_without_a_position() {
        let big = vec![b'#'; MAX_PLAN_BYTES + 1];
        let (message, at) = only(load_bytes("p.toml", &big).expect_err("refused"));
        assert!(message.contains("at most 1 MiB"), "{message}");
        assert_eq!(at, None);
    }

    #[test]
    fn an_empty_or_blank_plan_says_so() {
        for text in ["", " \n\t\n"] {
            let (message, at) = only(load_bytes("p.toml", text.as_bytes()).expect_err("refused"));
            assert_eq!(message, "the plan is empty");
            assert_eq!(at, Some((1, 1)));
        }
    }

    #[test]
    fn a_directory_is_not_a_plan() {
        let dir = std::env::temp_dir();
        let (message, at) = only(load_file(&dir).expect_err("refused"));
        assert!(message.ends_with("is a directory, not a plan file"), "{message}");
        assert_eq!(at, None);
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let (message, _) = only(load_file(Path::new("/nonexistent/plan.toml")).expect_err("refused"));
        assert!(
            message.starts_with("cannot read plan /nonexistent/plan.toml: "),
            "{message}"
        );
    }
}
