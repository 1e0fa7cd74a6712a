//! Turns both monitors' QMP events into the engine's [`DriverEvent`]s.

use engine::driver::{DeviceState, DriverEvent, MigrationStatus, Side};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::qmp::{QmpClient, QmpEvent};

/// Starts forwarding events from both clients; the receiver gets them in arrival order
/// per side.
pub(super) fn forward(source: &QmpClient, destination: &QmpClient) -> mpsc::UnboundedReceiver<DriverEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    spawn(Side::Source, source.subscribe(), tx.clone());
    spawn(Side::Destination, destination.subscribe(), tx);
    rx
}

fn spawn(side: Side, mut events: broadcast::Receiver<QmpEvent>, tx: mpsc::UnboundedSender<DriverEvent>) {
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(mapped) = map(side, &event) {
                        if tx.send(mapped).is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(DriverEvent::Disconnected {
                        side,
                        reason: "monitor connection closed".into(),
                    });
                    return;
                }
            }
        }
    });
}

/// Maps one QMP event; events the engine does not use are dropped here.
pub(crate) fn map(side: Side, event: &QmpEvent) -> Option<DriverEvent> {
    let at = tokio::time::Instant::from_std(event.received);
    match (event.name.as_str(), side) {
        ("STOP", _) => Some(DriverEvent::Stop { side, at }),
        ("RESUME", _) => Some(DriverEvent::Resume { side, at }),
        ("MIGRATION", Side::Source) => {
            let status = event.data.get("status").and_then(Value::as_str)?;
            Some(DriverEvent::Migration {
                status: MigrationStatus::parse(status),
                at,
            })
        }
        ("MIGRATION", Side::Destination) => {
            let status = event.data.get("status").and_then(Value::as_str)?;
            Some(DriverEvent::DestinationMigration {
                status: MigrationStatus::parse(status),
                at,
            })
        }
        ("MIGRATION_PASS", Side::Source) => {
            let pass = event.data.get("pass").and_then(Value::as_u64)?;
            Some(DriverEvent::Pass { pass, at })
        }
        ("VFIO_MIGRATION", _) => {
            let text = |key: &str| event.data.get(key).and_then(Value::as_str).map(str::to_string);
            Some(DriverEvent::DeviceState {
                side,
                id: text("device-id").unwrap_or_default(),
                qom_path: text("qom-path").unwrap_or_default(),
                state: DeviceState::parse(&text("device-state")?),
                at,
            })
        }
        ("DEVICE_DELETED", _) => {
            let text = |key: &str| event.data.get(key).and_then(Value::as_str).map(str::to_string);
            Some(DriverEvent::DeviceDeleted {
                side,
                id: text("device"),
                qom_path: text("path").unwrap_or_default(),
                at,
            })
        }
        _ => None,
    }
}
