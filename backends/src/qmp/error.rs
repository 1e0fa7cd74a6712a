//! Errors of the QMP client. Every message starts with the monitor it concerns
//! (`source (unix:/run/src.qmp)`) and, when there is one, the command, and says in
//! words what an operator can act on: why a socket could not be opened, that a silent
//! monitor may be serving another client, that a monitor is not answering (which is
//! not the same as gone).

use std::io;
use std::time::Duration;

use super::endpoint::QmpPeer;

/// What went wrong talking to a QMP monitor.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened; the message gives the OS's reason in words.
    #[error("{endpoint}: cannot connect: {}", connect_reason(source))]
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
    /// The socket opened but no greeting came. QEMU serves one QMP client per monitor:
    /// the kernel accepts a second connection, and QEMU greets it only once the first
    /// client leaves. A stopped (SIGSTOP) or hung QEMU looks the same from here.
    #[error(
        "{endpoint}: no greeting within {after:?}: another client may hold this monitor \
         (QEMU serves one QMP client at a time), or QEMU is not answering"
    )]
    NoGreeting {
        /// The monitor.
        endpoint: QmpPeer,
        /// How long the client waited.
        after: Duration,
    },
    /// No answer arrived in time: the process may be stopped or busy, but the
    /// connection is open, so it is not gone. `command` is the command's name, or
    /// `connect` when opening the socket took too long.
    #[error("{endpoint}: {command}: not answering within {after:?}{}", noise_words(noise))]
    Timeout {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command (or connection step) that timed out.
        command: String,
        /// How long the client waited.
        after: Duration,
        /// Lines the monitor sent meanwhile that were not the reply, if any.
        noise: Option<Noise>,
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
    /// The peer sent something that is not QMP: a reply without `return` (the
    /// connection stays open), or something the client cannot read past, such as an
    /// over-long line (the connection closes).
    #[error("{endpoint}: {}protocol error: {detail}{}", prefix(command), if *closed { " (connection closed)" } else { "" })]
    Protocol {
        /// The monitor.
        endpoint: QmpPeer,
        /// The command whose reply it was, or that was waiting when the error closed
        /// the connection, if any.
        command: Option<String>,
        /// What was wrong.
        detail: String,
        /// Whether the error closed the connection.
        closed: bool,
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

/// Lines a monitor sent while a command waited that were neither its reply nor an
/// event: garbage, truncated JSON, replies to ids never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noise {
    /// How many.
    pub lines: u64,
    /// What was wrong with the last one (its start, quoted).
    pub last: String,
}

fn noise_words(noise: &Option<Noise>) -> String {
    match noise {
        None => String::new(),
        Some(Noise { lines: 1, last }) => format!("; meanwhile it sent 1 line that is not a reply: {last}"),
        Some(Noise { lines, last }) => {
            format!("; meanwhile it sent {lines} lines that are not replies, the last: {last}")
        }
    }
}

/// The OS's reason a socket could not be opened, in words an operator acts on.
fn connect_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "no such socket".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::ConnectionRefused => "connection refused (nothing listens there)".to_owned(),
        _ => error.to_string(),
    }
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
            | QmpError::NoGreeting { endpoint, .. }
            | QmpError::Timeout { endpoint, .. }
            | QmpError::Command { endpoint, .. }
            | QmpError::Protocol { endpoint, .. }
            | QmpError::Closed { endpoint, .. }
            | QmpError::Decode { endpoint, .. }
            | QmpError::Encode { endpoint, .. } => endpoint,
        }
    }

    /// Whether the connection is gone (or never opened): only then is the other side
    /// "gone". A timeout is not: the process may be stopped and answer later.
    pub fn connection_lost(&self) -> bool {
        match self {
            QmpError::Connect { .. } | QmpError::Closed { .. } => true,
            QmpError::Protocol { closed, .. } => *closed,
            _ => false,
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
