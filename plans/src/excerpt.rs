//! The source line an error shows under its message, with a caret under the mistake.
//!
//! The line is the plan's own text, so it is shown the way [`crate::text`] shows any plan
//! text: secrets masked, unprintable characters escaped (a tab as four spaces, since
//! plans are indented with them). A plan may be one megabyte on one line; only a window
//! of [`WINDOW_COLUMNS`] around the mistake is shown, marked with `…` where cut.

use std::ops::Range;

use crate::redact::{assignment_range, secret_ranges, MASK};
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

/// Lines up to this long are masked and measured whole. Beyond it only the tokens around
/// the mistake are, so fifty mistakes on one megabyte line cost no more than on a short
/// one.
const WHOLE_LINE_BYTES: usize = 16 * 1024;

/// How far from the mistake a long line is read, in bytes, before the window is cut:
/// enough for [`WINDOW_COLUMNS`] of four-byte characters on either side.
const CONTEXT_BYTES: usize = 4 * WINDOW_COLUMNS;

/// How far past the context a cut looks for the end of the token it falls in. A token
/// cut further away than this is not shown at all, only `…`: the part of a secret it
/// holds might not look like one.
const TOKEN_BYTES: usize = 4 * 1024;

/// What is shown of one character, or of a masked or hidden run of them.
enum Piece {
    Char(char),
    Hidden(&'static str),
}

impl Piece {
    fn columns(&self) -> usize {
        match self {
            Piece::Char('\t') => 4,
            Piece::Char(c) if is_unprintable(*c) => {
                let mut s = String::new();
                escape_char(*c, &mut s);
                s.chars().count()
            }
            Piece::Char(_) => 1,
            Piece::Hidden(m) => m.chars().count(),
        }
    }

    fn push_to(&self, out: &mut String) {
        match self {
            Piece::Char('\t') => out.push_str("    "),
            Piece::Char(c) if is_unprintable(*c) => escape_char(*c, out),
            Piece::Char(c) => out.push(*c),
            Piece::Hidden(m) => out.push_str(m),
        }
    }
}

/// The pieces of `text` with the byte offset each starts at; `hidden` (sorted,
/// disjoint) are shown as their replacement.
fn pieces<'a>(
    text: &'a str,
    hidden: &'a [(Range<usize>, &'static str)],
) -> impl Iterator<Item = (usize, Piece)> + 'a {
    let mut next = 0;
    text.char_indices().filter_map(move |(i, c)| {
        while next < hidden.len() && hidden[next].0.end <= i {
            next += 1;
        }
        match hidden.get(next) {
            Some((r, shown)) if r.start == i => Some((i, Piece::Hidden(shown))),
            Some((r, _)) if r.contains(&i) => None,
            _ => Some((i, Piece::Char(c))),
        }
    })
}

/// Whether a byte ends a token for masking: white space and quotes, as in
/// [`crate::redact`].
fn is_break(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`')
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The part of a long `line` shown around `span`, cut where tokens end, and what in it is
/// masked or hidden (offsets into the part).
fn long_line_part(line: &str, span: &Range<usize>) -> (usize, usize, Vec<(Range<usize>, &'static str)>) {
    let bytes = line.as_bytes();
    let a = floor_boundary(line, span.start.saturating_sub(CONTEXT_BYTES));
    let b = ceil_boundary(line, span.end.min(span.start + CONTEXT_BYTES) + CONTEXT_BYTES).min(line.len());
    // Widen to whole tokens when one ends near; else the cut token is hidden.
    let reach_left = a.saturating_sub(TOKEN_BYTES);
    let left = if a == 0 {
        Some(0)
    } else {
        bytes[reach_left..a]
            .iter()
            .rposition(|b| is_break(*b))
            .map(|i| reach_left + i + 1)
    };
    let reach_right = (b + TOKEN_BYTES).min(line.len());
    let right = if b == line.len() {
        Some(b)
    } else {
        bytes[b..reach_right]
            .iter()
            .position(|b| is_break(*b))
            .map(|i| b + i)
    };
    let start = left.unwrap_or(a);
    let end = right.unwrap_or(b);
    let part = &line[start..end];
    let mut hidden: Vec<(Range<usize>, &'static str)> = Vec::new();
    if left.is_none() {
        let cut = part.bytes().position(is_break).unwrap_or(part.len());
        hidden.push((0..cut, "…"));
    }
    for r in secret_ranges(part) {
        hidden.push((r, MASK));
    }
    if let Some(r) = assignment_range(line) {
        // A secret `name = value` line: its value, wherever the part starts.
        let (s, e) = (r.start.max(start), r.end.min(end));
        if s < e {
            hidden.push((s - start..e - start, MASK));
        }
    }
    if right.is_none() {
        let cut = part.bytes().rposition(is_break).map_or(0, |i| i + 1);
        hidden.push((cut..part.len(), "…"));
    }
    (start, end, merge(hidden))
}

/// Sorts hidden runs and joins overlapping ones (the first one's replacement is kept).
fn merge(mut hidden: Vec<(Range<usize>, &'static str)>) -> Vec<(Range<usize>, &'static str)> {
    hidden.sort_by_key(|(r, _)| r.start);
    let mut merged: Vec<(Range<usize>, &'static str)> = Vec::with_capacity(hidden.len());
    for (r, shown) in hidden {
        if r.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some((last, _)) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push((r, shown)),
        }
    }
    merged
}

/// The line `line` shown with a caret under the bytes `span` of it (clamped to the line).
pub(crate) fn excerpt(line: &str, span: Range<usize>) -> Excerpt {
    let start = floor_boundary(line, span.start.min(line.len()));
    let end = span.end.clamp(start, line.len());
    let (offset, part_end, hidden) = if line.len() <= WHOLE_LINE_BYTES {
        let hidden = secret_ranges(line).into_iter().map(|r| (r, MASK)).collect();
        (0, line.len(), hidden)
    } else {
        long_line_part(line, &(start..end))
    };
    let part = &line[offset..part_end];
    let (start, end) = (start - offset, end.min(part_end) - offset);
    // First pass: columns, counted without building the whole line.
    let (mut caret, mut caret_end, mut total) = (None, None, 0);
    for (i, piece) in pieces(part, &hidden) {
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
    // A cut is marked with `…`, unless a hidden token already shows one there.
    let hidden_at_start = lo == 0 && hidden.first().is_some_and(|(r, m)| r.start == 0 && *m == "…");
    let hidden_at_end = hi == total
        && hidden
            .last()
            .is_some_and(|(r, m)| r.end == part.len() && *m == "…");
    let cut_left = (lo > 0 || offset > 0) && !hidden_at_start;
    let cut_right = (hi < total || part_end < line.len()) && !hidden_at_end;
    // Second pass: the pieces that start inside the window.
    let mut text = String::new();
    if cut_left {
        text.push('…');
    }
    let mut column = 0;
    for (_, piece) in pieces(part, &hidden) {
        if column >= hi {
            break;
        }
        if column >= lo {
            piece.push_to(&mut text);
        }
        column += piece.columns();
    }
    if cut_right {
        text.push('…');
    }
    Excerpt {
        text,
        caret: caret - lo.min(caret) + usize::from(cut_left),
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
    fn on_a_megabyte_line_only_the_tokens_near_the_mistake_are_read() {
        let line = format!("{} bad {}", "word ".repeat(200_000), "word ".repeat(200_000));
        let at = line.find("bad").unwrap_or_default();
        let e = excerpt(&line, at..at + 3);
        assert!(e.text.starts_with('…') && e.text.ends_with('…'), "{}", e.text);
        assert!(e.text.chars().count() <= WINDOW_COLUMNS + 2, "{}", e.text);
        assert_eq!(e.text.chars().skip(e.caret).take(3).collect::<String>(), "bad");
    }

    #[test]
    fn a_token_cut_far_from_its_end_is_hidden_not_shown_in_part() {
        // Cut in the middle, a password's user part and `@` might be out of sight.
        let line = format!("uri = \"tcp:user:{}@host:1\" x = 1", "p".repeat(100_000));
        let at = line.find(" x").unwrap_or_default();
        let e = excerpt(&line, at + 1..at + 2);
        assert!(!e.text.contains('p'), "{}", e.text);
        assert_eq!(e.text.chars().nth(e.caret), Some('x'));
    }

    #[test]
    fn a_hidden_token_at_a_cut_shows_one_ellipsis_not_two() {
        let line = format!("name = \"{}\"", "a".repeat(50_000));
        let e = excerpt(&line, 7..line.len());
        assert_eq!(e.text, "name = \"…");
        assert_eq!((e.caret, e.width), (7, 2));
    }

    #[test]
    fn a_secret_assignment_is_masked_on_a_long_line_too() {
        let line = format!("password = \"{}\"", "s".repeat(50_000));
        let e = excerpt(&line, 0..8);
        assert!(e.text.starts_with("password = ***"), "{}", e.text);
        assert!(!e.text.contains("sss"), "{}", e.text);
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
