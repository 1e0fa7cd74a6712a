//! `docs/plan.md` states every key's default in its tables; these tests hold it to the
//! code. The code's side is the plan's JSON Schema, generated from the model, whose
//! defaults come from `plans::defaults`.
//!
//! A default cell is one of: `required`; `none` or `QEMU's` (the tool sets nothing);
//! a value such as `` `300ms` `` or `` `"kernel"` ``, optionally followed by "at most
//! `key`"; "= `key`" (the same as another key); or, for a row naming several keys, their
//! values separated by commas. Where a table holds the keys of one of several kinds (an
//! endpoint's `qmp` or `libvirt`), "required, or `other`" says one of the two must be
//! written, and "required with `other`" that the key must be written with `other`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::BASE;

/// Cells saying the tool sets no value of its own.
const NO_VALUE: &[&str] = &["none", "QEMU's"];

/// One row of a table in `docs/plan.md`.
#[derive(Debug)]
struct Row {
    /// The plan table, e.g. `limits` (`devices` for `[[devices]]`).
    table: String,
    keys: Vec<String>,
    default: String,
    line: usize,
}

fn plan_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plan.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text between the first pair of backticks, and what follows it.
fn backticked(text: &str) -> Option<(&str, &str)> {
    let (_, rest) = text.split_once('`')?;
    let (inside, after) = rest.split_once('`')?;
    Some((inside, after))
}

/// Every key row of every `` ## `[table]` `` section.
fn documented_rows(md: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut table = None;
    for (i, line) in md.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            table = backticked(heading).map(|(name, _)| name.trim_matches(['[', ']']).to_string());
            continue;
        }
        let (Some(table), Some(row)) = (&table, line.strip_prefix("| `")) else {
            continue;
        };
        let line = format!("`{row}");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let mut keys = Vec::new();
        let mut rest = cells[0];
        while let Some((key, after)) = backticked(rest) {
            keys.push(key.to_string());
            rest = after;
        }
        rows.push(Row {
            table: table.clone(),
            keys,
            default: cells[2].to_string(),
            line: i + 1,
        });
    }
    rows
}

/// A table's keys in the schema: their property schemas, and which are required.
struct SchemaTable {
    properties: BTreeMap<String, Value>,
    required: BTreeSet<String>,
    /// The keys each `oneOf` branch requires.
    branches: Vec<BTreeSet<String>>,
}

fn definition<'s>(schema: &'s Value, reference: &Value) -> &'s Value {
    let name = reference
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .unwrap_or_else(|| panic!("not a local reference: {reference}"));
    &schema["$defs"][name]
}

/// Collects properties from an object schema and its `oneOf` branches; a key is required
/// when the object requires it, or when every branch does.
fn collect(def: &Value, into: &mut SchemaTable) {
    let required = |v: &Value| -> BTreeSet<String> {
        v["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    };
    if let Some(props) = def["properties"].as_object() {
        into.properties
            .extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    into.required.extend(required(def));
    if let Some(branches) = def["oneOf"].as_array() {
        let mut every: Option<BTreeSet<String>> = None;
        for branch in branches {
            if let Some(props) = branch["properties"].as_object() {
                into.properties
                    .extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let r = required(branch);
            into.branches.push(r.clone());
            every = Some(every.map_or(r.clone(), |e| e.intersection(&r).cloned().collect()));
        }
        into.required.extend(every.unwrap_or_default());
    }
}

fn schema_tables() -> BTreeMap<String, SchemaTable> {
    let schema: Value = serde_json::from_str(&plans::schema::plan_schema_json()).expect("schema is JSON");
    let mut tables = BTreeMap::new();
    let top = schema["properties"].as_object().expect("plan properties");
    for (name, property) in top {
        let reference = match &property["$ref"] {
            Value::Null => &property["items"]["$ref"],
            r => r,
        };
        let mut table = SchemaTable {
            properties: BTreeMap::new(),
            required: BTreeSet::new(),
            branches: Vec::new(),
        };
        collect(definition(&schema, reference), &mut table);
        tables.insert(name.clone(), table);
    }
    tables
}

/// A documented value as JSON: `"kernel"` and `2` as written, `300ms` as a string.
fn doc_value(text: &str) -> Value {
    let text = text.trim().trim_matches('`');
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A key's schema default; a key without one defaults to nothing.
fn schema_default(tables: &BTreeMap<String, SchemaTable>, table: &str, key: &str) -> Value {
    let (table, key) = key.split_once('.').unwrap_or((table, key));
    tables[table]
        .properties
        .get(key)
        .map_or(Value::Null, |p| p["default"].clone())
}

/// What is wrong with one row's default cell, if anything.
fn check_row(row: &Row, tables: &BTreeMap<String, SchemaTable>) -> Vec<String> {
    let table = &tables[&row.table];
    let cell = row.default.as_str();
    let mut wrong = Vec::new();
    let values: Vec<&str> = if row.keys.len() > 1 {
        cell.split(", ").collect()
    } else {
        vec![cell]
    };
    if values.len() != row.keys.len() {
        return vec![format!("{} keys but {} defaults", row.keys.len(), values.len())];
    }
    for (key, cell) in row.keys.iter().zip(values) {
        let code = schema_default(tables, &row.table, key);
        let required = table.required.contains(key);
        let branches = &table.branches;
        let fine = if let Some(other) = cell.strip_prefix("required, or ") {
            // Every kind requires one of the two.
            let other = other.trim_matches('`');
            !required && !branches.is_empty() && branches.iter().all(|b| b.contains(key) || b.contains(other))
        } else if let Some(other) = cell.strip_prefix("required with ") {
            // The kinds that require `other` require the key too.
            let other = other.trim_matches('`');
            let with_other: Vec<_> = branches.iter().filter(|b| b.contains(other)).collect();
            !required && !with_other.is_empty() && with_other.iter().all(|b| b.contains(key))
        } else if cell == "required" || required {
            cell == "required" && required
        } else if let Some(other) = cell.strip_prefix("= ") {
            code == schema_default(tables, &row.table, other.trim_matches('`'))
        } else if NO_VALUE.contains(&cell) {
            code.is_null()
        } else {
            let value = backticked(cell).map_or(cell, |(inside, _)| inside);
            code == doc_value(value)
        };
        if !fine {
            let code = if required {
                "required".to_string()
            } else {
                code.to_string()
            };
            wrong.push(format!("`{key}` is documented as {cell}, the code says {code}"));
        }
    }
    wrong
}

#[test]
fn every_documented_default_is_the_one_the_code_applies() {
    let tables = schema_tables();
    let wrong: Vec<String> = documented_rows(&plan_md())
        .iter()
        .flat_map(|row| {
            check_row(row, &tables)
                .into_iter()
                .map(move |w| format!("docs/plan.md:{}: [{}] {w}", row.line, row.table))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_key_of_the_plan_is_documented_and_every_documented_key_exists() {
    let tables = schema_tables();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in documented_rows(&plan_md()) {
        documented.entry(row.table).or_default().extend(row.keys);
    }
    let in_code: BTreeMap<String, BTreeSet<String>> = tables
        .iter()
        .map(|(name, t)| (name.clone(), t.properties.keys().cloned().collect()))
        .collect();
    assert_eq!(documented, in_code);
}

/// A documented default halved, as TOML: durations as strings, numbers as they are.
fn halved(value: &Value) -> String {
    match value {
        Value::Number(n) => (n.as_u64().expect("a whole number") / 2).to_string(),
        Value::String(s) => {
            let d: Duration = humantime::parse_duration(s).expect("a duration");
            format!("\"{}\"", humantime::format_duration(d / 2))
        }
        other => panic!("cannot halve {other}"),
    }
}

/// For each "`value`, at most `other`" row: a plan that sets only `other`, below the
/// default, is valid and the key takes `other`'s value.
#[test]
fn a_default_documented_as_at_most_another_key_gives_way_to_it() {
    let mut checked = 0;
    for row in documented_rows(&plan_md()) {
        let Some((value, rest)) = backticked(&row.default) else {
            continue;
        };
        let Some((other, _)) = rest.strip_prefix(", at most ").and_then(backticked) else {
            continue;
        };
        let (other_table, other_key) = other.split_once('.').unwrap_or((&row.table, other));
        let written = halved(&doc_value(value));
        let text = format!("{BASE}[{other_table}]\n{other_key} = {written}\n");
        let plan = match plans::load("plan.toml", &text) {
            Ok(plan) => serde_json::to_value(plan).expect("a plan serializes"),
            Err(e) => panic!("docs/plan.md:{}: only {other} set:\n{e}", row.line),
        };
        assert_eq!(
            plan[&row.table][&row.keys[0]], plan[other_table][other_key],
            "docs/plan.md:{}: {} with only {other} = {written}",
            row.line, row.keys[0]
        );
        checked += 1;
    }
    assert!(checked >= 1, "no \"at most\" default found in docs/plan.md");
}
