//! QMP message helpers: reading what passes through, and building what the proxy says.
//!
//! Lines the proxy does not change are forwarded byte for byte; these helpers only build
//! the messages it injects or rewrites. Like QEMU, every line it writes ends in `\r\n`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// A parsed line from either side, when it is a JSON object.
#[derive(Debug)]
pub(crate) enum Message {
    /// `{"execute" | "exec-oob": NAME, "arguments"?: {...}, "id"?: ...}` from the client.
    Command {
        /// The command's name.
        name: String,
        /// Its `arguments`, or an empty object.
        arguments: Value,
        /// Its `id`, verbatim, if it had one.
        id: Option<Value>,
    },
    /// `{"event": NAME, "data"?: {...}, "timestamp": {...}}` from QEMU.
    Event {
        /// The event's name.
        name: String,
        /// Its `data`, or an empty object.
        data: Value,
        /// Its `timestamp`, verbatim (`null` if absent).
        timestamp: Value,
    },
    /// `{"return": ...}` or `{"error": ...}` from QEMU.
    Reply {
        /// Its `id`, verbatim, if it had one.
        id: Option<Value>,
        /// Whether it is a `return` (success).
        ok: bool,
        /// The whole object, for rewriting.
        object: Map<String, Value>,
    },
    /// Any other JSON object (the greeting, or something new).
    Other,
}

/// Parses one line; `None` when it is not a JSON object (such lines pass through untouched).
pub(crate) fn parse(line: &[u8]) -> Option<Message> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(line) else {
        return None;
    };
    let command = object
        .get("execute")
        .or_else(|| object.get("exec-oob"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(name) = command {
        let arguments = match object.remove("arguments") {
            Some(arguments @ Value::Object(_)) => arguments,
            _ => Value::Object(Map::new()),
        };
        return Some(Message::Command {
            name,
            arguments,
            id: object.remove("id"),
        });
    }
    if let Some(name) = object.get("event").and_then(Value::as_str).map(str::to_owned) {
        let data = match object.remove("data") {
            Some(data @ Value::Object(_)) => data,
            _ => Value::Object(Map::new()),
        };
        let timestamp = object.remove("timestamp").unwrap_or(Value::Null);
        return Some(Message::Event {
            name,
            data,
            timestamp,
        });
    }
    let ok = object.contains_key("return");
    if ok || object.contains_key("error") {
        return Some(Message::Reply {
            id: object.get("id").cloned(),
            ok,
            object,
        });
    }
    Some(Message::Other)
}

/// QMP's `{"seconds", "microseconds"}` for the current wall-clock time.
pub(crate) fn timestamp_now() -> Value {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    json!({"seconds": since.as_secs(), "microseconds": since.subsec_micros()})
}

/// Serialises an event the proxy emits, stamped now, as one `\r\n`-terminated line.
pub(crate) fn event_line(name: &str, data: Value) -> String {
    let event = json!({"timestamp": timestamp_now(), "event": name, "data": data});
    format!("{event}\r\n")
}

/// A successful reply carrying the client's `id` verbatim.
pub(crate) fn return_line(value: Value, id: Option<&Value>) -> String {
    let mut object = Map::new();
    object.insert("return".into(), value);
    if let Some(id) = id {
        object.insert("id".into(), id.clone());
    }
    format!("{}\r\n", Value::Object(object))
}

/// An error reply (`class`, `desc`) carrying the client's `id` verbatim.
pub(crate) fn error_line(class: &str, desc: &str, id: Option<&Value>) -> String {
    let mut object = Map::new();
    if let Some(id) = id {
        object.insert("id".into(), id.clone());
    }
    object.insert("error".into(), json!({"class": class, "desc": desc}));
    format!("{}\r\n", Value::Object(object))
}

/// Serialises a rewritten reply object.
pub(crate) fn object_line(object: Map<String, Value>) -> String {
    format!("{}\r\n", Value::Object(object))
}

/// The `status` member of a `MIGRATION` event or a `query-migrate` reply.
pub(crate) fn status_of(value: &Value) -> Option<&str> {
    value.get("status").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_events_and_replies_are_told_apart() {
        let command = parse(br#"{"execute": "qom-get", "arguments": {"path": "/x"}, "id": [1]}"#);
        assert!(matches!(command, Some(Message::Command { ref name, id: Some(_), .. }) if name == "qom-get"));
        let event = parse(br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#);
        assert!(matches!(event, Some(Message::Event { ref name, .. }) if name == "STOP"));
        let reply = parse(br#"{"error": {"class": "GenericError", "desc": "x"}, "id": "a"}"#);
        assert!(matches!(reply, Some(Message::Reply { ok: false, .. })));
        assert!(parse(b"not json").is_none());
        assert!(parse(b"[1, 2]").is_none());
        assert!(matches!(parse(br#"{"QMP": {}}"#), Some(Message::Other)));
    }

    #[test]
    fn replies_carry_the_id_verbatim() {
        let id = json!({"weird": [1, "two"]});
        let line = return_line(json!({}), Some(&id));
        assert!(line.ends_with("\r\n"));
        let value: Value = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(value["id"], id);
        let line = error_line("GenericError", "no", None);
        let value: Value = serde_json::from_str(line.trim_end()).expect("json");
        assert!(value.get("id").is_none());
    }
}
