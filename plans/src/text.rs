//! Plan text as messages show it: secrets masked, control characters escaped, long
//! values cut short.
//!
//! A plan is input from anyone who can write a file. Whatever it holds ends up on an
//! operator's terminal and in logs when a message quotes it, so a quoted value must not
//! be able to move the cursor, clear the screen or reorder text (terminal escape
//! sequences, bidirectional overrides), must not flood the terminal (a megabyte on one
//! line), and must not reveal a password it carries.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::redact::redact;

/// The most characters of one plan value or key a message quotes; the rest is replaced
/// by `…` and the value's length.
pub const MAX_QUOTED_CHARS: usize = 80;

/// Whether a character must never reach a terminal raw: C0 and C1 controls, DEL, and the
/// bidirectional embeddings, overrides and isolates, which make a terminal show text in
/// another order than it is written.
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The first unprintable character of `text`, with its position in characters from 0.
pub fn first_unprintable(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| is_unprintable(*c))
}

/// How an unprintable character is written in a message: the way a TOML basic string
/// writes it, so the operator sees what to look for in the plan.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) <= 0xFFFF => {
            let _ = write!(out, "\\u{:04X}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08X}", c as u32);
        }
    }
}

/// `text` with every unprintable character escaped; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if first_unprintable(text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unprintable(c) {
            escape_char(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` escaped and cut to at most [`MAX_QUOTED_CHARS`] characters of the original;
/// what was cut is counted.
pub fn bounded(text: &str) -> String {
    let total = text.chars().count();
    if total <= MAX_QUOTED_CHARS {
        return escape(text).into_owned();
    }
    let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    format!("{}… ({total} characters)", escape(&head))
}

/// A plan value as a message quotes it: in double quotes, secrets masked (see
/// [`redact`]), unprintable characters escaped, cut to [`MAX_QUOTED_CHARS`].
pub fn quoted(value: &str) -> String {
    let redacted = redact(value);
    let total = redacted.chars().count();
    if total <= MAX_QUOTED_CHARS {
        return format!("\"{}\"", escape(&redacted));
    }
    let head: String = redacted.chars().take(MAX_QUOTED_CHARS).collect();
    format!("\"{}…\" ({total} characters)", escape(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escape_sequences_are_written_as_toml_escapes() {
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u001B[2Jb");
        assert_eq!(escape("nul\0"), "nul\\u0000");
        assert_eq!(escape("tab\there\r\n"), "tab\\there\\r\\n");
        assert_eq!(escape("del\u{7f} csi\u{9b}"), "del\\u007F csi\\u009B");
    }

    #[test]
    fn bidirectional_overrides_are_escaped_too() {
        assert_eq!(escape("abc\u{202E}fed"), "abc\\u202Efed");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u2066x\\u2069");
    }

    #[test]
    fn printable_text_is_left_as_it_is() {
        assert!(matches!(escape("gpu0 é 東京"), Cow::Borrowed("gpu0 é 東京")));
        assert_eq!(quoted("gpu0"), "\"gpu0\"");
    }

    #[test]
    fn a_long_value_is_cut_and_its_length_given() {
        let long = "x".repeat(50_000);
        let shown = quoted(&long);
        assert!(shown.len() < MAX_QUOTED_CHARS + 40, "{shown}");
        assert!(shown.ends_with("…\" (50000 characters)"), "{shown}");
        assert!(bounded(&long).ends_with("… (50000 characters)"));
    }

    #[test]
    fn a_quoted_value_never_shows_a_password() {
        assert_eq!(
            quoted("tcp:admin:hunter2@10.0.0.2:4444"),
            "\"tcp:admin:***@10.0.0.2:4444\""
        );
    }

    #[test]
    fn a_long_secret_masked_leaves_a_short_value_shown_whole() {
        let value = format!("tcp:user:{}@host:1", "p".repeat(10_000));
        assert_eq!(quoted(&value), "\"tcp:user:***@host:1\"");
    }

    #[test]
    fn the_first_unprintable_character_is_found_by_character_position() {
        assert_eq!(first_unprintable("é\0"), Some((1, '\0')));
        assert_eq!(first_unprintable("fine"), None);
    }
}
