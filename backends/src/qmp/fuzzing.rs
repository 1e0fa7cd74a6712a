//! The decoding every line from a monitor goes through, without a socket, for the fuzz
//! targets in `fuzz/` (feature `fuzzing`; not part of the API).
//!
//! A monitor is a peer the tool does not control: a QEMU newer than the `qapi-qmp`
//! schema, a proxy, or something listening where the plan said QEMU would be. Whatever
//! it sends must end as a message or an error, never as a panic.

use super::envelope::{classify, Envelope};
use super::greeting::Greeting;

/// What a line decoded to, for the fuzz target's checks.
#[derive(Debug)]
pub enum Decoded {
    /// A greeting, and whether its version read.
    Greeting(Result<Greeting, String>),
    /// A reply to a command.
    Reply,
    /// An event, and whether `qapi-qmp` could type it.
    Event {
        /// The event's name.
        name: String,
        /// Whether [`super::QmpEvent::typed`] decoded it.
        typed: bool,
    },
}

/// Decodes one line as the client's reader does: classify it, then read a greeting's
/// version or type an event. The error is the note the client would keep.
pub fn decode_line(line: &str) -> Result<Decoded, String> {
    Ok(match classify(line)? {
        Envelope::Greeting(value) => Decoded::Greeting(Greeting::from_value(&value)),
        Envelope::Reply { .. } => Decoded::Reply,
        Envelope::Event(event) => Decoded::Event {
            typed: event.typed().is_some(),
            name: event.name,
        },
    })
}
