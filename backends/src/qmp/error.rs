//! Errors of the QMP client. Every message starts with the monitor it concerns
//! (`source (unix:/run/src.qmp)`) and, when there is one, the command.

use std::io;
use std::time::Duration;

use super::endpoint::QmpPeer;

/// What went wrong talking to a QMP monitor.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened.
    #[error("{endpoint}: cannot connect")]
    Connect {
        /// The monitor.
        endpoint: QmpPeer,
        /// Why the connection failed.
        #[source]
        source: io::Error,
    },
    /// The first message was not a usable QMP greeting.
    #[error("{endpoint}: bad QMP greeting: {detail}")]
    Greeting {
        /// The monitor.
        endpoint: QmpPeer,
        /// What was wrong with it.
        detail: String,
    },
    /// No answer arrived in time. `command` is the command's name, or `connect` /
    /// `greeting` for the steps before the first command.
    #[error("{endpoint}: {command}: no reply within {after:?}")]
    Timeout {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command (or connection step) that timed out.
        command: String,
        /// How long the client waited.
        after: Duration,
    },
    /// QEMU answered the command with an error.
    #[error("{endpoint}: {command}: {class}: {desc}")]
    Command {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command that failed.
        command: String,
        /// QEMU's error class, e.g. `GenericError` or `CommandNotFound`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },
    /// The peer sent something that is not QMP; fatal ones close the connection.
    #[error("{endpoint}: {}protocol error: {detail}", prefix(command))]
    Protocol {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command that was waiting when the error closed the connection, if any.
        command: Option<String>,
        /// What was wrong.
        detail: String,
    },
    /// The connection is closed (or closed while the command waited).
    #[error("{endpoint}: {}connection closed", prefix(command))]
    Closed {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command that could not complete, if any.
        command: Option<String>,
    },
    /// The reply did not match the command's return type.
    #[error("{endpoint}: {command}: cannot decode reply: {detail}")]
    Decode {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command whose reply did not decode.
        command: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// The command's arguments could not be turned into a JSON object.
    #[error("{endpoint}: {command}: cannot encode arguments: {detail}")]
    Encode {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command.
        command: String,
        /// The encoder's complaint.
        detail: String,
    },
}

fn prefix(command: &Option<String>) -> String {
    match command {
        Some(command) => format!("{command}: "),
        None => String::new(),
    }
}

impl QmpError {
    /// The monitor this error concerns.
    pub fn endpoint(&self) -> &QmpPeer {
        match self {
            QmpError::Connect { endpoint, .. }
            | QmpError::Greeting { endpoint, .. }
            | QmpError::Timeout { endpoint, .. }
            | QmpError::Command { endpoint, .. }
            | QmpError::Protocol { endpoint, .. }
            | QmpError::Closed { endpoint, .. }
            | QmpError::Decode { endpoint, .. }
            | QmpError::Encode { endpoint, .. } => endpoint,
        }
    }

    /// QEMU's error class when QEMU rejected the command, e.g. `GenericError`.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}
