//! QOM for the modelled devices: `qom-list`, `qom-get` and `qom-set` as QEMU answers them
//! for a realized `vfio-pci` device under `/machine/peripheral`.

use serde_json::{json, Value};

use super::rewrite::{error_line, return_line};
use super::state::Model;

/// The container under which `-device ...,id=ID` devices live.
pub(crate) const PERIPHERAL: &str = "/machine/peripheral";

/// Properties a `vfio-pci` device lists (a subset of QEMU's: those a migration tool
/// reads), with their QOM types.
const PROPERTIES: &[(&str, &str)] = &[
    ("type", "string"),
    ("realized", "bool"),
    ("hotpluggable", "bool"),
    ("hotplugged", "bool"),
    ("host", "str"),
    ("enable-migration", "OnOffAuto"),
    ("migration-events", "bool"),
    ("x-pre-copy-dirty-page-tracking", "OnOffAuto"),
    ("x-device-dirty-page-tracking", "OnOffAuto"),
    ("x-migration-multifd-transfer", "OnOffAuto"),
];

/// The values an `OnOffAuto` property takes.
const ON_OFF_AUTO: [&str; 3] = ["on", "off", "auto"];

impl Model {
    /// The children QEMU would add to `qom-list /machine/peripheral`: one
    /// `child<vfio-pci>` per plugged modelled device.
    pub(crate) fn peripheral_children(&self) -> Vec<Value> {
        self.devices
            .iter()
            .filter(|d| d.present)
            .map(|d| json!({"name": d.cfg.id, "type": "child<vfio-pci>"}))
            .collect()
    }

    /// Answers `qom-list`/`qom-get`/`qom-set` aimed at a plugged modelled device, as a
    /// reply line with the client's `id`; `None` for anything else (QEMU answers it).
    pub(crate) fn qom_command(
        &mut self,
        name: &str,
        arguments: &Value,
        id: Option<&Value>,
    ) -> Option<String> {
        if !matches!(name, "qom-list" | "qom-get" | "qom-set") {
            return None;
        }
        let path = arguments.get("path").and_then(Value::as_str)?;
        let path = path.trim_end_matches('/');
        let index = self.devices.iter().position(|d| {
            d.present && (path == d.cfg.qom_path() || (!path.contains('/') && path == d.cfg.id))
        })?;
        if name == "qom-list" {
            let list: Vec<Value> = PROPERTIES
                .iter()
                .map(|(n, t)| json!({"name": n, "type": t}))
                .collect();
            return Some(return_line(Value::Array(list), id));
        }
        let Some(property) = arguments.get("property").and_then(Value::as_str) else {
            return Some(error_line("GenericError", "Parameter 'property' is missing", id));
        };
        let dev = &mut self.devices[index];
        if !PROPERTIES.iter().any(|(n, _)| *n == property) {
            let desc = format!("Property 'vfio-pci.{property}' not found");
            return Some(error_line("GenericError", &desc, id));
        }
        if name == "qom-get" {
            let value = match property {
                "type" => json!("vfio-pci"),
                "realized" | "hotpluggable" => json!(true),
                "hotplugged" => json!(false),
                "host" => json!(dev.cfg.host()),
                "enable-migration" | "x-pre-copy-dirty-page-tracking" | "x-device-dirty-page-tracking" => {
                    json!("on")
                }
                "x-migration-multifd-transfer" => json!(dev.multifd_transfer),
                _ => json!(dev.events),
            };
            return Some(return_line(value, id));
        }
        // qom-set. qdev refuses to change a static property of a realized device, except
        // the one QEMU 10.0 marks as settable after realize.
        if property == "x-migration-multifd-transfer" {
            let word = arguments.get("value").and_then(Value::as_str);
            return Some(match ON_OFF_AUTO.iter().find(|w| Some(**w) == word) {
                Some(w) => {
                    dev.multifd_transfer = w;
                    return_line(json!({}), id)
                }
                None => error_line("GenericError", "Parameter 'value' does not accept value", id),
            });
        }
        if property == "migration-events" && dev.cfg.allow_runtime_migration_events {
            return Some(match arguments.get("value").and_then(Value::as_bool) {
                Some(on) => {
                    dev.events = on;
                    return_line(json!({}), id)
                }
                None => error_line(
                    "GenericError",
                    "Invalid parameter type for 'migration-events', expected: boolean",
                    id,
                ),
            });
        }
        let desc = format!(
            "Attempt to set property '{property}' on device '{}' (type 'vfio-pci') after it was realized",
            dev.cfg.id
        );
        Some(error_line("GenericError", &desc, id))
    }
}
