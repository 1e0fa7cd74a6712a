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

/// Why a reply to a command carries no `return` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoReturn {
    /// QEMU refused the command (`{"error": {"class": ..., "desc": ...}}`).
    Refused(RemoteError),
    /// The reply names the command's id but has neither a `return` nor a well-formed
    /// `error`: delivered to the waiting command so that it fails at once with the
    /// reason, instead of waiting out its timeout.
    Malformed(String),
}

/// One message from the monitor.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// `{"QMP": {...}}`: the value of the `QMP` member.
    Greeting(Value),
    /// `{"return": ..., "id": ...}` or `{"error": {...}, "id": ...}`, or a message with
    /// an `id` and neither; `id` is `Null` when the reply carried none.
    Reply {
        id: Value,
        outcome: Result<Value, NoReturn>,
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
        let field = |name: &str| error.get(name).and_then(Value::as_str).map(printable);
        let outcome = match (field("class"), field("desc")) {
            (Some(class), Some(desc)) => NoReturn::Refused(RemoteError { class, desc }),
            _ => {
                let detail = format!("error reply without string `class` and `desc`: {}", excerpt(line));
                if id.is_null() {
                    return Err(detail);
                }
                NoReturn::Malformed(detail)
            }
        };
        return Ok(Envelope::Reply {
            id,
            outcome: Err(outcome),
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
    if let Some(id) = object.remove("id") {
        return Ok(Envelope::Reply {
            id,
            outcome: Err(NoReturn::Malformed(format!(
                "reply without `return` or `error`: {}",
                excerpt(line)
            ))),
        });
    }
    Err(format!(
        "neither reply, event nor greeting (members: {})",
        members(&object)
    ))
}

/// The start of a line, for error messages, printable.
pub(crate) fn excerpt(line: &str) -> String {
    const MAX: usize = 120;
    if line.chars().count() <= MAX {
        format!("`{}`", printable(line))
    } else {
        let head: String = line.chars().take(MAX).collect();
        format!("`{}...` ({} bytes)", printable(&head), line.len())
    }
}

/// Text from the monitor as it can be shown on a terminal: control characters (an
/// escape sequence, a NUL, a carriage return that hides what came before) are written
/// out as escapes; everything else is kept verbatim, as operators search for QEMU's words.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
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
        assert_eq!(outcome, Err(NoReturn::Refused(expected)));
    }

    #[test]
    fn a_reply_with_an_id_but_no_return_is_malformed_not_ignored() {
        for line in [
            r#"{"id": 7}"#,
            r#"{"id": 7, "error": {"class": 1}}"#,
            r#"{"id": 7, "retrun": {}}"#,
        ] {
            let Ok(Envelope::Reply { id, outcome }) = classify(line) else {
                panic!("{line}: not a reply");
            };
            assert_eq!(id, Value::from(7));
            let Err(NoReturn::Malformed(detail)) = outcome else {
                panic!("{line}: not malformed");
            };
            assert!(detail.contains(line), "{detail}");
        }
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
    fn control_characters_from_the_monitor_never_reach_a_terminal() {
        let message = classify("\u{1b}[2J\rnot json\u{0}").err().unwrap_or_default();
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.contains(r"\u{1b}[2J\rnot json\u{0}"), "{message}");
        let line = r#"{"id": 1, "error": {"class": "GenericError", "desc": "bad\u001b[31m red"}}"#;
        let Ok(Envelope::Reply { outcome, .. }) = classify(line) else {
            panic!("not a reply");
        };
        let Err(NoReturn::Refused(remote)) = outcome else {
            panic!("not refused");
        };
        assert_eq!(remote.desc, r"bad\u{1b}[31m red");
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
