//! The source line an error shows under its message, with a caret under the mistake.
//!
//! The line is the plan's own text, so it is shown the way [`crate::text`] shows any plan
//! text: secrets masked, unprintable characters escaped (a tab as four spaces, since
//! plans are indented with them). A plan may be one megabyte on one line; only a window
//! of [`WINDOW_COLUMNS`] around the mistake is shown, marked with `…` where cut.

use std::ops::Range;

use crate::redact::{secret_ranges, MASK};
use crate::text::{escape_char, is_unprintable};

/// The most columns of one source line an error shows.
pub const WINDOW_COLUMNS: usize = 200;

/// A source line as shown, and where the caret goes under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Excerpt {
    /// The line, masked, escaped and cut.
    pub(crate) text: String,
    /// Columns before the caret.
    pub(crate) caret: usize,
    /// Columns the caret underlines, at least one.
    pub(crate) width: usize,
}

/// One character of the line, or one masked secret, as it is shown.
enum Piece<'a> {
    Char(char),
    Mask(&'a str),
}

impl Piece<'_> {
    fn columns(&self) -> usize {
        match self {
            Piece::Char('\t') => 4,
            Piece::Char(c) if is_unprintable(*c) => {
                let mut s = String::new();
                escape_char(*c, &mut s);
                s.chars().count()
            }
            Piece::Char(_) => 1,
            Piece::Mask(m) => m.chars().count(),
        }
    }

    fn push_to(&self, out: &mut String) {
        match self {
            Piece::Char('\t') => out.push_str("    "),
            Piece::Char(c) if is_unprintable(*c) => escape_char(*c, out),
            Piece::Char(c) => out.push(*c),
            Piece::Mask(m) => out.push_str(m),
        }
    }
}

/// The pieces of `line` with the byte offset each starts at.
fn pieces(line: &str) -> impl Iterator<Item = (usize, Piece<'static>)> + '_ {
    let secrets = secret_ranges(line);
    let mut next_secret = 0;
    line.char_indices().filter_map(move |(i, c)| {
        while next_secret < secrets.len() && secrets[next_secret].end <= i {
            next_secret += 1;
        }
        match secrets.get(next_secret) {
            Some(r) if r.start == i => Some((i, Piece::Mask(MASK))),
            Some(r) if r.contains(&i) => None,
            _ => Some((i, Piece::Char(c))),
        }
    })
}

/// The line `line` shown with a caret under the bytes `span` of it (clamped to the line).
pub(crate) fn excerpt(line: &str, span: Range<usize>) -> Excerpt {
    let start = span.start.min(line.len());
    let end = span.end.clamp(start, line.len());
    // First pass: columns, counted without building the whole line.
    let (mut caret, mut caret_end, mut total) = (None, None, 0);
    for (i, piece) in pieces(line) {
        if caret.is_none() && i >= start {
            caret = Some(total);
        }
        if caret_end.is_none() && i >= end {
            caret_end = Some(total);
        }
        total += piece.columns();
    }
    let caret = caret.unwrap_or(total);
    let caret_end = caret_end.unwrap_or(total);
    let (lo, hi) = if total <= WINDOW_COLUMNS {
        (0, total)
    } else {
        let lo = caret
            .saturating_sub(WINDOW_COLUMNS / 2)
            .min(total - WINDOW_COLUMNS);
        (lo, lo + WINDOW_COLUMNS)
    };
    // Second pass: the pieces that start inside the window.
    let mut text = String::new();
    if lo > 0 {
        text.push('…');
    }
    let mut column = 0;
    for (_, piece) in pieces(line) {
        if column >= hi {
            break;
        }
        if column >= lo {
            piece.push_to(&mut text);
        }
        column += piece.columns();
    }
    if hi < total {
        text.push('…');
    }
    let shift = usize::from(lo > 0);
    Excerpt {
        text,
        caret: caret - lo.min(caret) + shift,
        width: caret_end
            .saturating_sub(caret)
            .clamp(1, (hi.saturating_sub(caret)).max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_line_is_shown_whole_with_the_caret_under_the_span() {
        let line = "downtime = \"soon\"";
        let e = excerpt(line, 11..17);
        assert_eq!(e.text, line);
        assert_eq!((e.caret, e.width), (11, 6));
    }

    #[test]
    fn a_huge_line_is_cut_around_the_mistake() {
        let line = format!("name = \"{}\" x", "a".repeat(1_000_000));
        let at = line.len() - 1;
        let e = excerpt(&line, at..at + 1);
        assert!(
            e.text.chars().count() <= WINDOW_COLUMNS + 2,
            "{} chars",
            e.text.len()
        );
        assert!(e.text.starts_with('…') && e.text.ends_with('x'));
        assert_eq!(e.text.chars().nth(e.caret), Some('x'));
    }

    #[test]
    fn control_characters_are_escaped_and_the_caret_follows() {
        let line = "id = \"a\u{1b}[2J\" oops";
        let at = line.find("oops").unwrap_or_default();
        let e = excerpt(line, at..at + 4);
        assert_eq!(e.text, "id = \"a\\u001B[2J\" oops");
        assert_eq!(&e.text[e.caret..e.caret + e.width], "oops");
    }

    #[test]
    fn a_secret_in_the_line_is_masked_and_the_caret_follows() {
        let line = "uri = \"tcp:u:hunter2@h:1\" extra";
        let at = line.find("extra").unwrap_or_default();
        let e = excerpt(line, at..at + 5);
        assert_eq!(e.text, "uri = \"tcp:u:***@h:1\" extra");
        assert_eq!(&e.text[e.caret..e.caret + e.width], "extra");
    }

    #[test]
    fn tabs_show_as_four_spaces() {
        let e = excerpt("\tx = 1", 1..2);
        assert_eq!(e.text, "    x = 1");
        assert_eq!(e.caret, 4);
    }

    #[test]
    fn a_span_past_the_line_is_clamped() {
        let e = excerpt("ab", 5..9);
        assert_eq!((e.caret, e.width), (2, 1));
        let e = excerpt("", 0..0);
        assert_eq!((e.text.as_str(), e.caret, e.width), ("", 0, 1));
    }
}
