//! Masking secrets in plan text before a message shows it.
//!
//! A plan may name endpoints and migration URIs that carry credentials: a userinfo
//! password (`qemu+ssh://root:pw@host/system`, or the scheme-less `tcp:user:pw@host`
//! operators sometimes write), a query or option parameter (`?password=...`,
//! `,token=...`), or, mistyped as an unknown key, a `password = "..."` line. Error messages
//! quote values and source lines, and messages end up in logs, tickets and chat; so
//! everything a message quotes from a plan goes through [`redact`] first.
//!
//! Masking is by pattern, not by parsing a URI grammar: the point is that nothing that
//! looks like a secret gets out, and masking a user name or a key file's path by
//! mistake costs nothing.

use std::borrow::Cow;
use std::ops::Range;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Parts of a parameter or key name that mark its value as a secret (compared in
/// lower case).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "secret",
    "key",
    "auth",
    "credential",
    "cookie",
];

/// Whether a parameter or key named `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// `text` with every secret replaced by [`MASK`]; borrowed when there is none.
///
/// ```
/// assert_eq!(plans::redact("tcp:admin:hunter2@10.0.0.2:4444"), "tcp:admin:***@10.0.0.2:4444");
/// assert_eq!(
///     plans::redact("qemu+tls://host/system?password=hunter2&x=1"),
///     "qemu+tls://host/system?password=***&x=1"
/// );
/// assert_eq!(plans::redact("unix:/run/qemu/vm.qmp"), "unix:/run/qemu/vm.qmp");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let ranges = secret_ranges(text);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The byte ranges of `text` that hold secrets: sorted, disjoint, non-empty, on
/// character boundaries.
pub fn secret_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if let Some(r) = assignment_range(line) {
            ranges.push(line_start + r.start..line_start + r.end);
        }
        line_start += line.len();
    }
    for token in tokens(text) {
        userinfo_password(text, token.clone(), &mut ranges);
        secret_parameters(text, token, &mut ranges);
    }
    merge(ranges)
}

/// In a line `name = value` whose name looks secret, the value: the rest of the line.
pub(crate) fn assignment_range(line: &str) -> Option<Range<usize>> {
    let eq = line.find('=')?;
    let name = line[..eq].trim().trim_matches(|c| c == '"' || c == '\'');
    let is_key = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || !name.chars().all(is_key) || !is_secret_name(name) {
        return None;
    }
    let value = &line[eq + 1..];
    let start = eq + 1 + (value.len() - value.trim_start().len());
    let end = eq + 1 + value.trim_end().len();
    (start < end).then_some(start..end)
}

/// The byte ranges of the words of `text`: split at white space and quotes, which never
/// occur unescaped inside a URI.
fn tokens(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let is_break = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`');
    let mut start = None;
    let mut list = Vec::new();
    for (i, c) in text.char_indices() {
        match (is_break(c), start) {
            (true, Some(s)) => {
                list.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        list.push(s..text.len());
    }
    list.into_iter()
}

/// The password of a userinfo: `scheme://user:PASSWORD@host` and the scheme-less
/// `tcp:user:PASSWORD@host`.
fn userinfo_password(text: &str, token: Range<usize>, out: &mut Vec<Range<usize>>) {
    let word = &text[token.clone()];
    let (authority_start, hierarchical) = match word.find("://") {
        Some(i) => (i + 3, true),
        None => (0, false),
    };
    let authority_end = word[authority_start..]
        .find(['/', '?', '#'])
        .map_or(word.len(), |i| authority_start + i);
    let authority = &word[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else { return };
    let userinfo = &authority[..at];
    let password_start = if hierarchical {
        // user[:password]: the user name has no colon, the password may.
        userinfo.find(':').map(|c| c + 1)
    } else {
        // scheme:user:password or user:password: the password follows the second colon
        // when there are two or more, else the first.
        let colons: Vec<usize> = userinfo.match_indices(':').map(|(i, _)| i).collect();
        match colons.len() {
            0 => None,
            1 => Some(colons[0] + 1),
            _ => Some(colons[1] + 1),
        }
    };
    if let Some(p) = password_start {
        if p < at {
            let base = token.start + authority_start;
            out.push(base + p..base + at);
        }
    }
}

/// Values of parameters named like secrets, in a query (`?password=...&...`) or in
/// QEMU's option syntax (`...,token=...`).
fn secret_parameters(text: &str, token: Range<usize>, out: &mut Vec<Range<usize>>) {
    let word = &text[token.clone()];
    let mut start = 0;
    for (i, c) in word.char_indices().chain(std::iter::once((word.len(), '&'))) {
        if !matches!(c, '?' | '&' | ';' | ',' | '#') {
            continue;
        }
        let segment = &word[start..i];
        if let Some(eq) = segment.find('=') {
            if is_secret_name(&segment[..eq]) && eq + 1 < segment.len() {
                out.push(token.start + start + eq + 1..token.start + i);
            }
        }
        start = i + c.len_utf8();
    }
}

/// Sorts ranges and joins those that overlap or touch.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_userinfo_password_is_masked_and_the_user_kept() {
        assert_eq!(
            redact("qemu+ssh://root:s3cr:et@host/system"),
            "qemu+ssh://root:***@host/system"
        );
        assert_eq!(redact("tcp:user:pass@host:4444"), "tcp:user:***@host:4444");
        assert_eq!(redact("user:pass@host"), "user:***@host");
        assert_eq!(redact("ssh://root@host/"), "ssh://root@host/");
    }

    #[test]
    fn parameters_named_like_secrets_are_masked() {
        assert_eq!(
            redact("qemu+tls://h/system?password=a&token=b&mode=c"),
            "qemu+tls://h/system?password=***&token=***&mode=c"
        );
        assert_eq!(
            redact("tcp:10.0.0.2:4444,tls-creds=x,secret-key=y"),
            "tcp:10.0.0.2:4444,tls-creds=x,secret-key=***"
        );
        assert_eq!(
            redact("https://h/?API_KEY=xyz#frag"),
            "https://h/?API_KEY=***#frag"
        );
    }

    #[test]
    fn a_secret_assigned_in_a_plan_line_is_masked() {
        assert_eq!(redact("password = \"hunter2\""), "password = ***");
        assert_eq!(redact("  api_token=abc # note\n"), "  api_token=***\n");
        assert_eq!(redact("stall_passes = 2"), "stall_passes = 2");
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        for text in [
            "unix:/run/qemu/vm@1.qmp",
            "tcp:127.0.0.1:4444",
            "downtime = \"300ms\"",
            "listen = \"tcp:10.0.0.2:49152\"",
            "",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn secrets_inside_a_source_line_are_found_in_place() {
        let line = "uri = \"tcp:u:pw@h:1\" # and ?token=t";
        let ranges = secret_ranges(line);
        let found: Vec<&str> = ranges.iter().map(|r| &line[r.clone()]).collect();
        assert_eq!(found, ["pw", "t"]);
    }

    #[test]
    fn masking_works_on_any_text_without_panicking() {
        for text in ["@", ":@", "://@", "a://:@", "?=&=,", "é:ü@ß?key=東", "=", "key="] {
            let _ = redact(text);
        }
        assert_eq!(redact("é:ü@ß?key=東"), "é:***@ß?key=***");
    }
}
