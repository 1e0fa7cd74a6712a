//! Classifies one line from the monitor as a greeting, a reply or an event.
//!
//! Decoding goes through `serde_json::Value`, so nothing here depends on the
//! `qapi-qmp` schema: unknown events and enum values pass through untouched.

use serde_json::{Map, Value};

use super::event::QmpEvent;

/// QEMU's answer to a failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteError {
    /// The error class, e.g. `GenericError`.
    pub(crate) class: String,
    /// The description.
    pub(crate) desc: String,
}

/// One message from the monitor.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// `{"QMP": {...}}`: the value of the `QMP` member.
    Greeting(Value),
    /// `{"return": ..., "id": ...}` or `{"error": {...}, "id": ...}`; `id` is `Null`
    /// when the reply carried none.
    Reply {
        id: Value,
        outcome: Result<Value, RemoteError>,
    },
    /// `{"event": ..., "data": ..., "timestamp": ...}`.
    Event(QmpEvent),
}

/// Classifies a line; the error describes why it is not a QMP message.
pub(crate) fn classify(line: &str) -> Result<Envelope, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {}", excerpt(line)))?;
    let Value::Object(mut object) = value else {
        return Err(format!("not a JSON object: {}", excerpt(line)));
    };
    if let Some(value) = object.remove("return") {
        let id = object.remove("id").unwrap_or(Value::Null);
        return Ok(Envelope::Reply {
            id,
            outcome: Ok(value),
        });
    }
    if let Some(error) = object.remove("error") {
        let id = object.remove("id").unwrap_or(Value::Null);
        let field = |name: &str| error.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(class), Some(desc)) = (field("class"), field("desc")) else {
            return Err(format!(
                "error reply without string `class` and `desc`: {}",
                excerpt(line)
            ));
        };
        return Ok(Envelope::Reply {
            id,
            outcome: Err(RemoteError { class, desc }),
        });
    }
    if let Some(name) = object.remove("event") {
        let Value::String(name) = name else {
            return Err(format!("event name is not a string: {}", excerpt(line)));
        };
        let data = object.remove("data");
        return Ok(Envelope::Event(QmpEvent::new(
            name,
            data,
            object.get("timestamp"),
        )));
    }
    if let Some(greeting) = object.remove("QMP") {
        return Ok(Envelope::Greeting(greeting));
    }
    Err(format!(
        "neither reply, event nor greeting (members: {})",
        members(&object)
    ))
}

/// The start of a line, for error messages.
pub(crate) fn excerpt(line: &str) -> String {
    const MAX: usize = 120;
    if line.chars().count() <= MAX {
        format!("`{line}`")
    } else {
        let head: String = line.chars().take(MAX).collect();
        format!("`{head}...` ({} bytes)", line.len())
    }
}

/// The first member names of an object, each cut short: a name may be as long as the
/// line, and notes are kept.
fn members(object: &Map<String, Value>) -> String {
    const MAX_NAME: usize = 40;
    let names: Vec<String> = object
        .keys()
        .take(8)
        .map(|name| {
            if name.chars().count() <= MAX_NAME {
                name.clone()
            } else {
                let head: String = name.chars().take(MAX_NAME).collect();
                format!("{head}...")
            }
        })
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_with_id_is_a_reply() {
        let Ok(Envelope::Reply { id, outcome }) = classify(r#"{"return": {}, "id": 3}"#) else {
            panic!("not a reply");
        };
        assert_eq!(id, Value::from(3));
        assert_eq!(outcome, Ok(Value::Object(Map::new())));
    }

    #[test]
    fn error_carries_class_and_desc() {
        let line = r#"{"id": 4, "error": {"class": "GenericError", "desc": "nope"}}"#;
        let Ok(Envelope::Reply { outcome, .. }) = classify(line) else {
            panic!("not a reply");
        };
        let expected = RemoteError {
            class: "GenericError".into(),
            desc: "nope".into(),
        };
        assert_eq!(outcome, Err(expected));
    }

    #[test]
    fn event_without_data_gets_an_empty_object() {
        let line = r#"{"timestamp": {"seconds": 1, "microseconds": 5}, "event": "STOP"}"#;
        let Ok(Envelope::Event(event)) = classify(line) else {
            panic!("not an event");
        };
        assert_eq!(event.name, "STOP");
        assert_eq!(event.data, Value::Object(Map::new()));
        assert!(matches!(event.typed(), Some(qapi_qmp::Event::STOP { .. })));
    }

    #[test]
    fn garbage_and_strangers_are_errors_not_panics() {
        for line in ["", "{", "42", "[]", r#"{"hello": 1}"#, r#"{"error": 1}"#] {
            assert!(classify(line).is_err(), "{line:?} classified");
        }
    }

    #[test]
    fn a_stranger_with_long_member_names_is_noted_briefly() {
        let name = "m".repeat(5_000);
        let line = format!(r#"{{"{name}": 1, "{name}x": 2}}"#);
        let message = classify(&line).err().unwrap_or_default();
        assert!(
            message.starts_with("neither reply, event nor greeting"),
            "{message}"
        );
        assert!(message.len() < 200, "{} bytes", message.len());
    }

    #[test]
    fn long_lines_are_excerpted_in_errors() {
        let line = "x".repeat(10_000);
        let message = classify(&line).err().unwrap_or_default();
        assert!(message.len() < 400, "{message}");
    }
}
