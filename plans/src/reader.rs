//! A reader over the spanned TOML tree that records every mistake instead of stopping at
//! the first, so a plan's whole list of problems can be shown at once.
//!
//! serde's derive stops at the first error and loses the positions of values that parsed
//! but fail a later check; reading the tree by hand keeps a span for every key and value.

use std::cell::Cell;
use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::Diagnostic;
use crate::text::{bounded, first_unprintable, quoted};
use crate::units::{parse_duration, Bytes, Rate};

/// Collects the mistakes found while reading one plan.
#[derive(Debug, Default)]
pub(crate) struct Mistakes {
    pub(crate) list: Vec<Diagnostic>,
}

impl Mistakes {
    pub(crate) fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }
}

/// A value with the byte range it came from.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) span: Range<usize>,
}

/// Reads the keys of one table. Keys that are read are remembered; [`TableReader::finish`]
/// reports the others as unknown, with the nearest known key as a hint.
pub(crate) struct TableReader<'a, 'i> {
    path: String,
    span: Range<usize>,
    table: &'a DeTable<'i>,
    known: &'static [&'static str],
    failed: Cell<bool>,
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The hint for an unknown key: the nearest known key when it is within three edits
/// (Levenshtein, so a letter left out, added or changed counts one), else the whole list.
fn unknown_key_hint(name: &str, known: &[&str]) -> String {
    // The distance is at least the difference in length: a key of a megabyte, or one of
    // a hundred thousand unknown keys, costs no distance computation.
    let length = name.chars().count();
    let nearest = known
        .iter()
        .filter(|known| length.abs_diff(known.len()) <= 3)
        .map(|known| (strsim::levenshtein(name, known), *known))
        .min();
    match nearest {
        Some((d, known)) if d <= 3 => format!("did you mean `{known}`?"),
        _ if known.is_empty() => "this table takes no keys".to_string(),
        _ => format!("known keys here: {}", known.join(", ")),
    }
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub(crate) fn new(
        path: impl Into<String>,
        table: &'a DeTable<'i>,
        span: Range<usize>,
        known: &'static [&'static str],
    ) -> Self {
        TableReader {
            path: path.into(),
            span,
            table,
            known,
            failed: Cell::new(false),
        }
    }

    /// The dotted path of a key in this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn entry(&self, key: &str) -> Option<(&'a Spanned<DeValue<'i>>, Range<usize>)> {
        debug_assert!(self.known.contains(&key), "{key} missing from known keys");
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, v)| (v, k.span()))
    }

    /// Where the key's value is, when the key is present.
    pub(crate) fn value_span(&self, key: &str) -> Option<Range<usize>> {
        self.entry(key).map(|(v, _)| v.span())
    }

    /// Whether the key is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// Records a mistake about one of this table's values.
    fn fail(&self, m: &mut Mistakes, d: Diagnostic) {
        self.failed.set(true);
        m.push(d);
    }

    /// Whether reading any value of this table produced a mistake (missing required
    /// keys included; unknown keys are reported by [`TableReader::finish`]).
    pub(crate) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Reports a missing required key.
    pub(crate) fn missing(&self, m: &mut Mistakes, key: &str, hint: &str) {
        self.fail(
            m,
            Diagnostic::new(
                self.key_path(key),
                self.span.clone(),
                format!("missing required key `{key}`"),
            )
            .hint(hint),
        );
    }

    fn wrong_type(&self, m: &mut Mistakes, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        self.fail(
            m,
            Diagnostic::new(
                self.key_path(key),
                v.span(),
                format!("expected {want}, found {}", type_name(v.get_ref())),
            )
            .hint(format!("write `{key}` as {want}")),
        );
    }

    /// A string value.
    pub(crate) fn string(&self, m: &mut Mistakes, key: &str) -> Option<At<String>> {
        let (v, _) = self.entry(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.to_string(),
                span: v.span(),
            }),
            _ => {
                self.wrong_type(m, key, v, "a string");
                None
            }
        }
    }

    /// A string that names something in reports and logs (a VM, a device): not empty and
    /// free of control characters, which would reach terminals and logs raw, and of
    /// bidirectional overrides, which would make a name read as another. `example` is a
    /// good value, for the hint.
    pub(crate) fn name(&self, m: &mut Mistakes, key: &str, example: &str) -> Option<At<String>> {
        let s = self.string(m, key)?;
        let hint = format!("write e.g. `{key} = \"{example}\"`");
        if s.value.trim().is_empty() {
            self.fail(
                m,
                Diagnostic::new(self.key_path(key), s.span, "must not be empty").hint(hint),
            );
            return None;
        }
        if let Some((at, c)) = first_unprintable(&s.value) {
            self.fail(
                m,
                Diagnostic::new(
                    self.key_path(key),
                    s.span,
                    format!(
                        "contains the control character {} at character {}",
                        quoted(&c.to_string()),
                        at + 1
                    ),
                )
                .hint(format!(
                    "names are printed in reports and logs: use letters, digits and punctuation; {hint}"
                )),
            );
            return None;
        }
        Some(s)
    }

    /// A boolean value.
    pub(crate) fn boolean(&self, m: &mut Mistakes, key: &str) -> Option<At<bool>> {
        let (v, _) = self.entry(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(At {
                value: *b,
                span: v.span(),
            }),
            _ => {
                self.wrong_type(m, key, v, "true or false");
                None
            }
        }
    }

    /// A non-negative integer value within `range`.
    pub(crate) fn integer(
        &self,
        m: &mut Mistakes,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<At<u64>> {
        let (v, _) = self.entry(key)?;
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(m, key, v, "an integer");
            return None;
        };
        let text: String = i.as_str().chars().filter(|c| *c != '_').collect();
        match u64::from_str_radix(&text, i.radix()) {
            Ok(n) if range.contains(&n) => Some(At {
                value: n,
                span: v.span(),
            }),
            _ => {
                self.fail(
                    m,
                    Diagnostic::new(
                        self.key_path(key),
                        v.span(),
                        format!("{} is out of range", bounded(i.as_str())),
                    )
                    .hint(format!(
                        "`{key}` takes a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )),
                );
                None
            }
        }
    }

    fn quantity<T>(
        &self,
        m: &mut Mistakes,
        key: &str,
        what: &str,
        example: &str,
        parse: impl Fn(&str) -> Result<T, crate::units::UnitError>,
    ) -> Option<At<T>> {
        let (v, _) = self.entry(key)?;
        let DeValue::String(s) = v.get_ref() else {
            self.fail(
                m,
                Diagnostic::new(
                    self.key_path(key),
                    v.span(),
                    format!(
                        "expected {what} as a string with a unit, found {}",
                        type_name(v.get_ref())
                    ),
                )
                .hint(format!("write e.g. `{key} = \"{example}\"`")),
            );
            return None;
        };
        match parse(s) {
            Ok(value) => Some(At {
                value,
                span: v.span(),
            }),
            Err(e) => {
                self.fail(
                    m,
                    Diagnostic::new(self.key_path(key), v.span(), e.to_string())
                        .hint(format!("write e.g. `{key} = \"{example}\"`")),
                );
                None
            }
        }
    }

    /// A duration such as `"300ms"`; zero is refused unless `allow_zero`.
    pub(crate) fn duration(
        &self,
        m: &mut Mistakes,
        key: &str,
        example: &str,
        allow_zero: bool,
    ) -> Option<At<Duration>> {
        let d = self.quantity(m, key, "a duration", example, parse_duration)?;
        if !allow_zero && d.value.is_zero() {
            self.fail(
                m,
                Diagnostic::new(self.key_path(key), d.span, "must be greater than zero")
                    .hint(format!("write e.g. `{key} = \"{example}\"`")),
            );
            return None;
        }
        Some(d)
    }

    /// A size such as `"512MiB"`.
    pub(crate) fn bytes(&self, m: &mut Mistakes, key: &str, example: &str) -> Option<At<Bytes>> {
        self.quantity(m, key, "a size", example, Bytes::parse)
    }

    /// A rate such as `"128MiB/s"`; zero is refused.
    pub(crate) fn rate(&self, m: &mut Mistakes, key: &str, example: &str) -> Option<At<Rate>> {
        let r = self.quantity(m, key, "a rate", example, Rate::parse)?;
        if r.value.0 == 0 {
            self.fail(
                m,
                Diagnostic::new(self.key_path(key), r.span, "must be greater than zero")
                    .hint(format!("write e.g. `{key} = \"{example}\"`")),
            );
            return None;
        }
        Some(r)
    }

    /// One of a fixed set of words.
    pub(crate) fn choice<T: Copy>(
        &self,
        m: &mut Mistakes,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<At<T>> {
        let s = self.string(m, key)?;
        match choices.iter().find(|(name, _)| *name == s.value) {
            Some((_, value)) => Some(At {
                value: *value,
                span: s.span,
            }),
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                self.fail(
                    m,
                    Diagnostic::new(
                        self.key_path(key),
                        s.span,
                        format!("unknown value {}", quoted(&s.value)),
                    )
                    .hint(format!("`{key}` is one of {}", names.join(", "))),
                );
                None
            }
        }
    }

    /// A sub-table, `[path.key]` or an inline table.
    pub(crate) fn table(&self, m: &mut Mistakes, key: &str) -> Option<(&'a DeTable<'i>, Range<usize>)> {
        let (v, key_span) = self.entry(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, key_span)),
            _ => {
                self.wrong_type(m, key, v, "a table");
                None
            }
        }
    }

    /// An array of values with their spans.
    pub(crate) fn array(
        &self,
        m: &mut Mistakes,
        key: &str,
    ) -> Option<(&'a [Spanned<DeValue<'i>>], Range<usize>)> {
        let (v, _) = self.entry(key)?;
        match v.get_ref() {
            DeValue::Array(a) => Some((&a[..], v.span())),
            _ => {
                self.wrong_type(m, key, v, "an array");
                None
            }
        }
    }

    /// Reports every key of this table that is not one of the known keys.
    pub(crate) fn finish(self, m: &mut Mistakes) {
        for (k, _) in self.table.iter() {
            let name = k.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let hint = unknown_key_hint(name, self.known);
            // The key is the plan's own text: shown escaped and cut, like any value.
            let shown = bounded(name);
            m.push(
                Diagnostic::new(self.key_path(&shown), k.span(), format!("unknown key `{shown}`")).hint(hint),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_key_hint;

    const LIMITS: &[&str] = &[
        "downtime",
        "max_downtime",
        "max_bandwidth",
        "deadline",
        "saving_timeout",
    ];

    #[test]
    fn a_misspelt_key_is_matched_to_the_nearest_known_one() {
        assert_eq!(unknown_key_hint("dowtime", LIMITS), "did you mean `downtime`?");
        assert_eq!(
            unknown_key_hint("max_bandwith", LIMITS),
            "did you mean `max_bandwidth`?"
        );
        assert_eq!(
            unknown_key_hint("saving_timout", LIMITS),
            "did you mean `saving_timeout`?"
        );
    }

    #[test]
    fn three_edits_is_the_furthest_a_suggestion_reaches() {
        assert_eq!(unknown_key_hint("dxxxtime", LIMITS), "did you mean `downtime`?");
        assert_eq!(
            unknown_key_hint("dxxxxime", LIMITS),
            "known keys here: downtime, max_downtime, max_bandwidth, deadline, saving_timeout"
        );
    }

    #[test]
    fn a_table_without_keys_says_so() {
        assert_eq!(unknown_key_hint("anything", &[]), "this table takes no keys");
    }
}
