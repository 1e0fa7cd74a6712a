//! Plan mistakes as operators see them: file, line, column, the key, what is wrong and
//! how to fix it, rendered like a compiler error with the offending source line.
//!
//! A plan is checked completely before anything is reported, so one run lists every
//! mistake instead of making the operator fix them one at a time.
//!
//! Everything shown comes from a file anyone may have written, so what an error prints
//! is bounded and inert: at most [`MAX_LISTED`] mistakes, a window of each source line,
//! every message escaped (see [`crate::text`]) and secrets masked.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::excerpt::excerpt;
use crate::text::escape;

/// The text of a plan and the name it is reported under.
#[derive(Debug, Clone)]
pub struct PlanSource {
    /// How the plan is named in messages: its path, or `<demo>` for the bundled one.
    pub name: String,
    /// The plan's TOML text.
    pub text: String,
}

/// A position in a plan, 1-based like editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl PlanSource {
    /// Wraps a plan's text with the name used in messages.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        PlanSource {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The line and column of a byte offset (clamped to the text).
    pub fn position(&self, offset: usize) -> Position {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }

    /// The whole source line holding `offset`, without its newline.
    pub fn line_text(&self, offset: usize) -> &str {
        self.line_at(offset).1
    }

    /// The byte offset where the line holding `offset` starts, and the line without its
    /// newline.
    pub(crate) fn line_at(&self, offset: usize) -> (usize, &str) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        (start, self.text[start..end].trim_end_matches('\r'))
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One mistake in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The dotted key the mistake is about, e.g. `limits.downtime` or `devices[1].id`;
    /// empty for a syntax error that belongs to no key.
    pub key: String,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Byte range in the plan text the mistake points at; `None` for a mistake about
    /// the file as a whole (a directory, a file too large to read), which has no line.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
}

impl Diagnostic {
    /// A mistake at `span` about `key`.
    pub fn new(key: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: key.into(),
            message: message.into(),
            hint: None,
            span: Some(span),
        }
    }

    /// A mistake about the plan file as a whole, which no line of it shows.
    pub fn whole_file(message: impl Into<String>) -> Self {
        Diagnostic {
            key: String::new(),
            message: message.into(),
            hint: None,
            span: None,
        }
    }

    /// Adds a hint on how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Where it starts, for sorting: mistakes about the whole file come first.
    pub(crate) fn start(&self) -> usize {
        self.span.as_ref().map_or(0, |s| s.start)
    }
}

/// Every mistake found in one plan, in source order.
#[derive(Debug, Clone)]
pub struct PlanErrors {
    /// The plan they were found in.
    pub source: PlanSource,
    /// The mistakes, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

/// A diagnostic with its position resolved, for JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct LocatedDiagnostic {
    /// The plan's name (its path).
    pub file: String,
    /// Line, from 1; left out for a mistake about the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Column, from 1; left out for a mistake about the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The mistake.
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
}

/// The most mistakes one report lists, in words or in JSON. A plan of a megabyte can
/// hold a hundred thousand; the first ones are what an operator fixes first, and the
/// count says how many more there are.
pub const MAX_LISTED: usize = 50;

/// The most characters of one message or hint shown; ours are far shorter, and a
/// library's message is cut rather than trusted.
const MAX_MESSAGE_CHARS: usize = 400;

/// A message, hint, key or file name as a terminal shows it: unprintable characters
/// escaped, cut to [`MAX_MESSAGE_CHARS`].
fn shown(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return escape(text).into_owned();
    }
    let head: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{}…", escape(&head))
}

impl PlanErrors {
    /// The mistakes with file, line and column, for machine-readable output; at most
    /// [`MAX_LISTED`] of them (see [`PlanErrors::summary`] for the count).
    pub fn located(&self) -> Vec<LocatedDiagnostic> {
        self.diagnostics
            .iter()
            .take(MAX_LISTED)
            .map(|d| {
                let pos = d.span.as_ref().map(|s| self.source.position(s.start));
                LocatedDiagnostic {
                    file: self.source.name.clone(),
                    line: pos.map(|p| p.line),
                    column: pos.map(|p| p.column),
                    diagnostic: d.clone(),
                }
            })
            .collect()
    }

    /// One line saying what was found, for the JSON `msg`.
    pub fn summary(&self) -> String {
        let n = self.diagnostics.len();
        let listed = if n > MAX_LISTED {
            format!(" (the first {MAX_LISTED} listed)")
        } else {
            String::new()
        };
        match self.diagnostics.as_slice() {
            [only] if only.span.is_none() => only.message.clone(),
            _ => format!("{} has {n} mistake(s){listed}", self.source.name),
        }
    }

    fn fmt_one(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        let name = shown(&self.source.name);
        let Some(span) = &d.span else {
            write!(f, "error: {}", shown(&d.message))?;
            if let Some(hint) = &d.hint {
                write!(f, "\n  = hint: {}", shown(hint))?;
            }
            return Ok(());
        };
        let pos = self.source.position(span.start);
        let key = if d.key.is_empty() {
            String::new()
        } else {
            format!("{}: ", shown(&d.key))
        };
        writeln!(
            f,
            "error: {name}:{}:{}: {key}{}",
            pos.line,
            pos.column,
            shown(&d.message)
        )?;
        let (line_start, line) = self.source.line_at(span.start);
        let shown_line = excerpt(line, span.start - line_start..span.end.saturating_sub(line_start));
        let gutter = pos.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", pos.line, shown_line.text)?;
        write!(
            f,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(shown_line.caret),
            "^".repeat(shown_line.width)
        )?;
        if let Some(hint) = &d.hint {
            write!(f, "\n{:gutter$} = hint: {}", "", shown(hint))?;
        }
        Ok(())
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().take(MAX_LISTED).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            self.fmt_one(f, d)?;
        }
        let n = self.diagnostics.len();
        if n > MAX_LISTED {
            write!(f, "\n\n... and {} more", n - MAX_LISTED)?;
        }
        if n > 1 {
            write!(f, "\n\n{n} mistakes in {}", shown(&self.source.name))?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let src = PlanSource::new("p.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        let offset = src.text.find('"').expect("quote");
        assert_eq!(src.position(offset), Position { line: 2, column: 6 });
        assert_eq!(src.line_text(offset), "bé = \"x\"");
    }

    #[test]
    fn rendering_names_file_line_column_key_and_hint() {
        let text = "[limits]\ndowntime = \"soon\"\n";
        let start = text.find("\"soon\"").expect("value");
        let errors = PlanErrors {
            source: PlanSource::new("plan.toml", text),
            diagnostics: vec![
                Diagnostic::new("limits.downtime", start..start + 6, "invalid duration")
                    .hint("write e.g. \"300ms\""),
            ],
        };
        let shown = errors.to_string();
        assert!(shown.starts_with("error: plan.toml:2:12: limits.downtime: invalid duration"));
        assert!(shown.contains("2 | downtime = \"soon\""));
        assert!(shown.contains("^^^^^^"));
        assert!(shown.contains("= hint: write e.g."));
    }
}
