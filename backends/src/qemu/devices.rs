//! VFIO devices as QEMU's QOM tree shows them, for every backend that can send QMP
//! commands to the source (directly, or through libvirt).

use async_trait::async_trait;
use engine::driver::{DeviceInfo, DriverError, OnOffAuto};
use serde_json::{json, Value};

use super::stream;

/// Sends one QMP command to the source's QEMU and returns its `return` value.
#[async_trait]
pub(crate) trait SourceCommands: Send {
    /// The command's reply, or why it failed.
    async fn source_command(&mut self, command: &str, args: Value) -> Result<Value, DriverError>;
}

/// A device's `migration-events` and `x-migration-multifd-transfer`, where QEMU has
/// them.
pub(crate) async fn properties(
    qemu: &mut dyn SourceCommands,
    qom_path: &str,
) -> (Option<bool>, Option<OnOffAuto>) {
    let migration_events = qemu
        .source_command(
            "qom-get",
            json!({"path": qom_path, "property": "migration-events"}),
        )
        .await
        .ok()
        .and_then(|v| v.as_bool());
    let multifd_transfer = qemu
        .source_command(
            "qom-get",
            json!({"path": qom_path, "property": stream::MULTIFD_TRANSFER}),
        )
        .await
        .ok()
        .and_then(|v| v.as_str().and_then(OnOffAuto::parse));
    (migration_events, multifd_transfer)
}

/// Every `vfio*` device under `/machine/peripheral`, with its `migration-events` and
/// `x-migration-multifd-transfer` properties where QEMU has them.
pub(crate) async fn list_vfio(qemu: &mut dyn SourceCommands) -> Result<Vec<DeviceInfo>, DriverError> {
    let list = qemu
        .source_command("qom-list", json!({"path": "/machine/peripheral"}))
        .await?;
    let mut devices = Vec::new();
    for entry in list.as_array().into_iter().flatten() {
        let (Some(name), Some(kind)) = (
            entry.get("name").and_then(Value::as_str),
            entry.get("type").and_then(Value::as_str),
        ) else {
            continue;
        };
        let Some(type_name) = kind.strip_prefix("child<").and_then(|t| t.strip_suffix('>')) else {
            continue;
        };
        if !type_name.starts_with("vfio") {
            continue;
        }
        let qom_path = format!("/machine/peripheral/{name}");
        let (migration_events, multifd_transfer) = properties(qemu, &qom_path).await;
        devices.push(DeviceInfo {
            id: name.to_string(),
            qom_path,
            type_name: type_name.to_string(),
            migration_events,
            multifd_transfer,
        });
    }
    Ok(devices)
}
