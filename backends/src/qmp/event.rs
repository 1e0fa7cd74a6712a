//! Asynchronous events as the client delivers them: raw JSON first, typed on request.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// An event from the monitor, e.g. `STOP`, `MIGRATION` or `VFIO_MIGRATION`.
///
/// Delivered whether or not `qapi-qmp` knows the event or every enum value in it;
/// [`QmpEvent::typed`] decodes it when it can.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event's name, e.g. `MIGRATION`.
    pub name: String,
    /// The event's `data` member; an empty object when QEMU sent none.
    pub data: Value,
    /// QEMU's wall-clock time for the event (its `timestamp` member).
    pub timestamp: SystemTime,
    /// Local monotonic time at which the client read the event, for measuring pauses.
    pub received: Instant,
}

impl QmpEvent {
    /// Builds an event from its envelope parts. A missing or negative `timestamp`
    /// falls back to the local time of receipt.
    pub(crate) fn new(name: String, data: Option<Value>, timestamp: Option<&Value>) -> QmpEvent {
        let data = match data {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(data) => data,
        };
        QmpEvent {
            name,
            data,
            timestamp: timestamp.and_then(wall_time).unwrap_or_else(SystemTime::now),
            received: Instant::now(),
        }
    }

    /// The event as `qapi-qmp`'s typed enum, or `None` when the crate cannot decode it
    /// (an event newer than the crate's schema, or an enum value it does not know).
    pub fn typed(&self) -> Option<qapi_qmp::Event> {
        let since_epoch = self.timestamp.duration_since(UNIX_EPOCH).ok()?;
        let envelope = json!({
            "event": self.name,
            "data": self.data,
            "timestamp": {
                "seconds": since_epoch.as_secs(),
                "microseconds": since_epoch.subsec_micros(),
            },
        });
        serde_json::from_value(envelope).ok()
    }
}

/// Converts QMP's `{"seconds": s, "microseconds": us}` into a wall-clock time.
fn wall_time(timestamp: &Value) -> Option<SystemTime> {
    let seconds = timestamp.get("seconds")?.as_u64()?;
    let micros = timestamp.get("microseconds")?.as_u64()?;
    let offset = Duration::from_secs(seconds).checked_add(Duration::from_micros(micros))?;
    UNIX_EPOCH.checked_add(offset)
}
