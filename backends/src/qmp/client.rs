//! The public QMP client: connect, negotiate, run commands, subscribe to events.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::connection::{CloseReason, Connection};
use super::endpoint::{QmpEndpoint, QmpPeer, StreamReader};
use super::envelope::{classify, Envelope, NoReturn};
use super::error::QmpError;
use super::event::QmpEvent;
use super::greeting::Greeting;
use super::MAX_LINE_BYTES;

/// How long a command waits for its reply unless told otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest first line accepted: QEMU's greeting is a few hundred bytes, so a
/// monitor that starts with a long line is not QEMU, and need not cost memory.
const MAX_GREETING_BYTES: usize = 64 * 1024;

/// A negotiated connection to one QEMU monitor.
///
/// Clones share the connection (and its reader task); each clone has its own
/// default command timeout. The connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct QmpClient {
    connection: Arc<Connection>,
    greeting: Arc<Greeting>,
    command_timeout: Duration,
    peer_pid: Option<u32>,
}

impl fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QmpClient")
            .field("peer", self.connection.peer())
            .field("version", &self.greeting.version)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl QmpClient {
    /// Connects, reads the greeting, negotiates (`qmp_capabilities`) and spawns the
    /// reader. `label` (e.g. `source`) names the monitor in errors; `timeout` bounds
    /// each of the three steps. Must run inside a tokio runtime.
    pub async fn connect(
        endpoint: &QmpEndpoint,
        label: &str,
        timeout: Duration,
    ) -> Result<QmpClient, QmpError> {
        let peer = QmpPeer {
            label: label.to_owned(),
            endpoint: endpoint.clone(),
        };
        let (stream, peer_pid) = match tokio::time::timeout(timeout, endpoint.open()).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    endpoint: peer,
                    command: "connect".to_owned(),
                    after: timeout,
                    noise: None,
                })
            }
            Ok(Err(source)) => {
                return Err(QmpError::Connect {
                    endpoint: peer,
                    source,
                })
            }
            Ok(Ok(opened)) => opened,
        };
        let mut lines = FramedRead::new(
            stream.reader(),
            LinesCodec::new_with_max_length(MAX_GREETING_BYTES),
        );
        let greeting = match tokio::time::timeout(timeout, read_greeting(&mut lines)).await {
            Err(_) => {
                return Err(QmpError::NoGreeting {
                    endpoint: peer,
                    after: timeout,
                })
            }
            Ok(Err(detail)) => {
                return Err(QmpError::Greeting {
                    endpoint: peer,
                    detail,
                })
            }
            Ok(Ok(greeting)) => greeting,
        };
        // Past the greeting, replies may be long (the codec keeps what it has buffered).
        *lines.decoder_mut() = LinesCodec::new_with_max_length(MAX_LINE_BYTES);
        let client = QmpClient {
            connection: Arc::new(Connection::start(peer, lines, stream)),
            greeting: Arc::new(greeting),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            peer_pid,
        };
        client
            .execute_with_timeout(qapi_qmp::qmp_capabilities { enable: None }, timeout)
            .await?;
        Ok(client)
    }

    /// What QEMU announced when the client connected.
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// The process at the other end of a unix-socket monitor (QEMU, or a proxy in
    /// front of it), as the kernel reported it when the client connected.
    pub fn peer_pid(&self) -> Option<u32> {
        self.peer_pid
    }

    /// The monitor's label and address, as errors name it.
    pub fn peer(&self) -> &QmpPeer {
        self.connection.peer()
    }

    /// Runs a typed `qapi-qmp` command with this client's default command timeout.
    pub async fn execute<C: qapi_spec::Command>(&self, cmd: C) -> Result<C::Ok, QmpError> {
        self.execute_with_timeout(cmd, self.command_timeout).await
    }

    /// Runs a typed `qapi-qmp` command, waiting at most `timeout` for its reply.
    pub async fn execute_with_timeout<C: qapi_spec::Command>(
        &self,
        cmd: C,
        timeout: Duration,
    ) -> Result<C::Ok, QmpError> {
        let arguments = serde_json::to_value(&cmd).map_err(|e| self.encode_error(C::NAME, e))?;
        let value = self.call(C::NAME, Some(arguments), timeout).await?;
        serde_json::from_value(value).map_err(|e| QmpError::Decode {
            endpoint: self.peer().clone(),
            command: C::NAME.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Runs a command by name and returns its raw `return` value, for commands the
    /// crate's schema lacks or fields it does not model. `arguments` must be a JSON
    /// object (or `None`); an empty object is sent as no arguments.
    pub async fn execute_raw(&self, name: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.call(name, arguments, self.command_timeout).await
    }

    /// A receiver for every event read after this call. It yields `Closed` once the
    /// connection closes, and `Lagged` if it falls more than 4096 events behind.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.connection.subscribe()
    }

    /// Sets the timeout [`QmpClient::execute`] and [`QmpClient::execute_raw`] use
    /// (for this handle only; clones keep their own). The default is 10 s.
    pub fn set_command_timeout(&mut self, d: Duration) {
        self.command_timeout = d;
    }

    /// Whether the connection has closed (peer gone, or a fatal protocol error).
    pub fn is_closed(&self) -> bool {
        self.connection.is_closed()
    }

    /// Whether the connection has closed or the kernel already reports that the peer
    /// hung up, before the reader has read to the end: what a run checks while QEMU
    /// holds the guest, where continuing into a side that is gone cannot be undone.
    pub fn is_hung_up(&self) -> bool {
        self.connection.is_closed() || self.connection.hung_up()
    }

    /// Recent protocol problems that did not close the connection (unparseable
    /// lines, replies nobody waits for), plus the one that closed it, if any.
    /// Oldest first; the last 32 are kept.
    pub fn protocol_errors(&self) -> Vec<String> {
        self.connection.notes()
    }

    async fn call(&self, name: &str, arguments: Option<Value>, timeout: Duration) -> Result<Value, QmpError> {
        let closed = || QmpError::Closed {
            endpoint: self.peer().clone(),
            command: Some(name.to_owned()),
        };
        let mut message = Map::new();
        message.insert("execute".to_owned(), Value::from(name));
        match arguments {
            None | Some(Value::Null) => {}
            Some(Value::Object(arguments)) if arguments.is_empty() => {}
            Some(arguments @ Value::Object(_)) => {
                message.insert("arguments".to_owned(), arguments);
            }
            Some(other) => {
                return Err(self.encode_error(name, format!("arguments are not an object: {other}")))
            }
        }
        let (id, reply) = self.connection.register().ok_or_else(closed)?;
        let _abandon_on_drop = Abandon {
            connection: &self.connection,
            id,
        };
        message.insert("id".to_owned(), Value::from(id));
        let noted = self.connection.noted();
        if !self.connection.send(Value::Object(message).to_string()) {
            return Err(closed());
        }
        let outcome = match tokio::time::timeout(timeout, reply).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    endpoint: self.peer().clone(),
                    command: name.to_owned(),
                    after: timeout,
                    noise: self.connection.noise_since(noted),
                })
            }
            Ok(outcome) => outcome,
        };
        let protocol = |detail: String, closed: bool| QmpError::Protocol {
            endpoint: self.peer().clone(),
            command: Some(name.to_owned()),
            detail,
            closed,
        };
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(NoReturn::Refused(remote)))) => Err(QmpError::Command {
                endpoint: self.peer().clone(),
                command: name.to_owned(),
                class: remote.class,
                desc: remote.desc,
            }),
            Ok(Ok(Err(NoReturn::Malformed(detail)))) => Err(protocol(detail, false)),
            Ok(Err(CloseReason::Protocol(detail))) => Err(protocol(detail, true)),
            Ok(Err(CloseReason::Gone)) | Err(_) => Err(closed()),
        }
    }

    fn encode_error(&self, command: &str, detail: impl fmt::Display) -> QmpError {
        QmpError::Encode {
            endpoint: self.peer().clone(),
            command: command.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// Forgets a command's slot when its caller stops waiting (timeout or cancellation),
/// so that a late reply is discarded quietly.
struct Abandon<'a> {
    connection: &'a Connection,
    id: u64,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.connection.abandon(self.id);
    }
}

/// Reads lines until the greeting; the error says why there is none.
///
/// Events before the greeting are skipped. QEMU broadcasts an event to every monitor
/// not in capabilities negotiation, and a monitor returns to negotiation only when it
/// handles a new client's connection, after the socket is already connected: an event
/// emitted in between (a migration's status change, while another client has just
/// hung up) reaches the new client ahead of its greeting. It was meant for no one.
async fn read_greeting(lines: &mut FramedRead<StreamReader, LinesCodec>) -> Result<Greeting, String> {
    loop {
        let line = match lines.next().await {
            None => return Err("connection closed before the greeting".to_owned()),
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                return Err(format!(
                    "first line longer than {MAX_GREETING_BYTES} bytes (a greeting is a few hundred)"
                ))
            }
            Some(Err(e)) => return Err(format!("unreadable first line: {e}")),
            Some(Ok(line)) => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        return match classify(&line) {
            Ok(Envelope::Greeting(qmp)) => Greeting::from_value(&qmp),
            Ok(Envelope::Event(_)) => continue,
            Ok(Envelope::Reply { .. }) => Err("first message is not a greeting".to_owned()),
            Err(detail) => Err(detail),
        };
    }
}
