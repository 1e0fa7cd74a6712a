//! The plan's JSON Schema, generated from the model's own declarations, so editors and
//! CI can check plans with the same field names and documentation as the tool.

use crate::model::Plan;

/// The JSON Schema of a plan, pretty-printed.
pub fn plan_schema_json() -> String {
    let schema = schemars::schema_for!(Plan);
    serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
