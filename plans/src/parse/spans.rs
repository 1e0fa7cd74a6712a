//! Where each key sits in the plan text, recorded once from the whole TOML tree.
//!
//! Checks made after reading point at the value they are about, and a key the plan left
//! out is told from one it wrote (for [`crate::defaults::follow`]); recording every key
//! up front spares each table reader from doing it by hand.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// The span of every key the plan wrote, by dotted path (`limits.downtime`,
/// `devices[0].id`): a scalar's or array's value, a table's key.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    map: HashMap<String, Range<usize>>,
    /// Where the document starts, for keys missing at top level.
    document: Range<usize>,
}

impl Spans {
    /// Records every key of the document `root`, which spans `span`.
    pub(crate) fn of_document(root: &DeTable<'_>, span: Range<usize>) -> Spans {
        let mut spans = Spans {
            map: HashMap::new(),
            document: span.start..span.start,
        };
        spans.record_table("", root);
        spans
    }

    fn record_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            match value.get_ref() {
                DeValue::Table(t) => {
                    self.map.insert(path.clone(), key.span());
                    self.record_table(&path, t);
                }
                DeValue::Array(items) => {
                    self.map.insert(path.clone(), value.span());
                    for (i, item) in items.iter().enumerate() {
                        if let DeValue::Table(t) = item.get_ref() {
                            self.record_table(&format!("{path}[{i}]"), t);
                        }
                    }
                }
                _ => {
                    self.map.insert(path, value.span());
                }
            }
        }
    }

    /// Whether the plan wrote this key.
    pub(crate) fn written(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The span of a key's value, or of its table when the key was left out.
    pub(crate) fn of(&self, key: &str) -> Range<usize> {
        if let Some(span) = self.map.get(key) {
            return span.clone();
        }
        // Fall back to the closest recorded parent table.
        let mut parent = key;
        while let Some(i) = parent.rfind('.') {
            parent = &parent[..i];
            if let Some(span) = self.map.get(parent) {
                return span.clone();
            }
        }
        self.document.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::Spans;
    use toml::de::DeTable;

    fn spans(text: &str) -> Spans {
        let root = DeTable::parse(text).expect("valid TOML");
        Spans::of_document(root.get_ref(), root.span())
    }

    fn at<'t>(text: &'t str, s: &Spans, key: &str) -> &'t str {
        &text[s.of(key)]
    }

    #[test]
    fn a_value_is_found_by_its_dotted_path() {
        let text = "[limits]\ndowntime = \"1s\"\n[[devices]]\nid = \"gpu0\"\n";
        let s = spans(text);
        assert_eq!(at(text, &s, "limits.downtime"), "\"1s\"");
        assert_eq!(at(text, &s, "devices[0].id"), "\"gpu0\"");
        assert!(s.written("limits.downtime"));
    }

    #[test]
    fn a_key_left_out_points_at_its_table_and_is_not_written() {
        let text = "[limits]\ndowntime = \"1s\"\n";
        let s = spans(text);
        assert_eq!(at(text, &s, "limits.deadline"), "limits");
        assert!(!s.written("limits.deadline"));
    }

    #[test]
    fn a_key_of_a_missing_table_points_at_the_start() {
        let s = spans("[vm]\nname = \"x\"\n");
        assert_eq!(s.of("policy.force"), 0..0);
    }
}
