//! Plan mistakes as operators see them: file, line, column, the key, what is wrong and
//! how to fix it, rendered like a compiler error with the offending source line.
//!
//! A plan is checked completely before anything is reported, so one run lists every
//! mistake instead of making the operator fix them one at a time.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

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
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        self.text[start..end].trim_end_matches('\r')
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
    /// Byte range in the plan text the mistake points at.
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Diagnostic {
    /// A mistake at `span` about `key`.
    pub fn new(key: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: key.into(),
            message: message.into(),
            hint: None,
            span,
        }
    }

    /// Adds a hint on how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
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
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The mistake.
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
}

impl PlanErrors {
    /// The mistakes with file, line and column, for machine-readable output.
    pub fn located(&self) -> Vec<LocatedDiagnostic> {
        self.diagnostics
            .iter()
            .map(|d| {
                let pos = self.source.position(d.span.start);
                LocatedDiagnostic {
                    file: self.source.name.clone(),
                    line: pos.line,
                    column: pos.column,
                    diagnostic: d.clone(),
                }
            })
            .collect()
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let pos = self.source.position(d.span.start);
            let key = if d.key.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.key)
            };
            writeln!(
                f,
                "error: {}:{}:{}: {key}{}",
                self.source.name, pos.line, pos.column, d.message
            )?;
            let line = self.source.line_text(d.span.start);
            let gutter = pos.line.to_string().len();
            let width = d
                .span
                .end
                .saturating_sub(d.span.start)
                .clamp(1, line.chars().count().saturating_sub(pos.column - 1).max(1));
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {line}", pos.line)?;
            write!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(pos.column - 1),
                "^".repeat(width)
            )?;
            if let Some(hint) = &d.hint {
                write!(f, "\n{:gutter$} = hint: {hint}", "")?;
            }
        }
        if self.diagnostics.len() > 1 {
            write!(
                f,
                "\n\n{} mistakes in {}",
                self.diagnostics.len(),
                self.source.name
            )?;
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
