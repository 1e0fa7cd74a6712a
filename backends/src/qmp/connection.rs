//! One open monitor connection: a reader task that dispatches replies and events, the
//! writing of command lines, and the table of waiting commands.
//!
//! A command line is written straight from the caller's task when nothing is waiting
//! to be written before it (one non-blocking write): `migrate-continue`, sent while
//! QEMU holds the guest paused, goes out without a hop through another task. What the
//! socket does not take at once waits in order for the writer task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::endpoint::{QmpPeer, Stream, StreamReader};
use super::envelope::{classify, excerpt, Envelope, NoReturn};
use super::error::Noise;
use super::event::QmpEvent;
use super::MAX_LINE_BYTES;

/// How many events a subscriber may fall behind before it sees `Lagged`.
const EVENT_BACKLOG: usize = 4096;
/// How many non-fatal protocol problems are remembered.
const NOTE_BACKLOG: usize = 32;
/// How many abandoned (timed-out or cancelled) command ids are remembered.
const ABANDONED_BACKLOG: usize = 4096;

/// QEMU's answer to a command: its `return` value, or why there is none.
pub(crate) type Reply = Result<Value, NoReturn>;

/// Why the connection closed.
#[derive(Debug, Clone)]
pub(crate) enum CloseReason {
    /// The peer closed it, or a read or write failed.
    Gone,
    /// The peer sent something the client cannot continue after.
    Protocol(String),
}

type Waiter = oneshot::Sender<Result<Reply, CloseReason>>;

/// What the reader, the writer and the client share.
struct State {
    inner: Mutex<Inner>,
    closed: watch::Sender<bool>,
}

struct Inner {
    next_id: u64,
    pending: HashMap<u64, Waiter>,
    abandoned: HashSet<u64>,
    close_reason: Option<CloseReason>,
    events: Option<broadcast::Sender<QmpEvent>>,
    notes: VecDeque<String>,
    /// Every note ever taken, so a timed-out command can say what came meanwhile.
    noted: u64,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the table consistent
        // (every operation is a single insert or remove), so keep going.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&self, note: String) {
        let mut inner = self.lock();
        if inner.notes.len() == NOTE_BACKLOG {
            inner.notes.pop_front();
        }
        inner.notes.push_back(note);
        inner.noted += 1;
    }

    /// Marks the connection closed and fails every waiting command.
    fn close(&self, reason: CloseReason) {
        let waiters = {
            let mut inner = self.lock();
            if inner.close_reason.is_some() {
                return;
            }
            if let CloseReason::Protocol(detail) = &reason {
                let detail = detail.clone();
                if inner.notes.len() == NOTE_BACKLOG {
                    inner.notes.pop_front();
                }
                inner.notes.push_back(detail);
            }
            inner.close_reason = Some(reason.clone());
            inner.events = None;
            std::mem::take(&mut inner.pending)
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(reason.clone()));
        }
        self.closed.send_replace(true);
    }

    fn dispatch(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match classify(line) {
            Ok(Envelope::Reply { id, outcome }) => self.deliver_reply(id, outcome),
            Ok(Envelope::Event(event)) => {
                if let Some(events) = &self.lock().events {
                    // No subscribers is fine: nobody asked for events.
                    let _ = events.send(event);
                }
            }
            Ok(Envelope::Greeting(_)) => self.note("unexpected second greeting".to_owned()),
            Err(detail) => self.note(detail),
        }
    }

    fn deliver_reply(&self, id: Value, outcome: Reply) {
        let Some(number) = id.as_u64() else {
            // The id is the peer's, as long as the line: noted in part.
            self.note(format!(
                "reply with an id this client never sent ({}) ignored",
                excerpt(&id.to_string())
            ));
            return;
        };
        let mut inner = self.lock();
        if let Some(waiter) = inner.pending.remove(&number) {
            drop(inner);
            // The receiver may be gone if the caller stopped waiting; that is fine.
            let _ = waiter.send(Ok(outcome));
        } else if !inner.abandoned.remove(&number) {
            drop(inner);
            self.note(format!(
                "reply for unknown or already answered id {number} ignored"
            ));
        }
    }
}

/// Aborts the reader task when the connection is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lines on their way to the socket.
struct Outgoing {
    queue: Mutex<Queue>,
    /// Wakes the writer task when a line is queued.
    queued: Notify,
}

struct Queue {
    /// The socket; `None` once the connection closed, so that the socket closes with
    /// the reader and the writer even while the client is kept.
    stream: Option<Stream>,
    /// Lines (with their newlines) the socket did not take yet, in order.
    lines: VecDeque<Vec<u8>>,
    /// The writer task holds the front line's rest outside the queue.
    writing: bool,
}

impl Outgoing {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running connection. Dropping it stops both tasks and closes the socket.
pub(crate) struct Connection {
    peer: QmpPeer,
    state: Arc<State>,
    outgoing: Arc<Outgoing>,
    _reader: AbortOnDrop,
    _writer: AbortOnDrop,
}

impl Connection {
    /// Spawns the reader and writer tasks on an already greeted stream.
    pub(crate) fn start(
        peer: QmpPeer,
        lines: FramedRead<StreamReader, LinesCodec>,
        stream: Stream,
    ) -> Connection {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let (closed, closed_rx) = watch::channel(false);
        let state = Arc::new(State {
            inner: Mutex::new(Inner {
                next_id: 1,
                pending: HashMap::new(),
                abandoned: HashSet::new(),
                close_reason: None,
                events: Some(events),
                notes: VecDeque::new(),
                noted: 0,
            }),
            closed,
        });
        let outgoing = Arc::new(Outgoing {
            queue: Mutex::new(Queue {
                stream: Some(stream),
                lines: VecDeque::new(),
                writing: false,
            }),
            queued: Notify::new(),
        });
        let reader = tokio::spawn(read_loop(Arc::clone(&state), lines));
        let writer = tokio::spawn(write_loop(Arc::clone(&state), Arc::clone(&outgoing), closed_rx));
        Connection {
            peer,
            state,
            outgoing,
            _reader: AbortOnDrop(reader),
            _writer: AbortOnDrop(writer),
        }
    }

    /// The monitor this connection talks to.
    pub(crate) fn peer(&self) -> &QmpPeer {
        &self.peer
    }

    /// Allocates an id and a slot for its reply; `None` if the connection is closed.
    pub(crate) fn register(&self) -> Option<(u64, oneshot::Receiver<Result<Reply, CloseReason>>)> {
        let mut inner = self.state.lock();
        if inner.close_reason.is_some() {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (waiter, reply) = oneshot::channel();
        inner.pending.insert(id, waiter);
        Some((id, reply))
    }

    /// Gives up on a command: its reply, if it still comes, is dropped silently.
    pub(crate) fn abandon(&self, id: u64) {
        let mut inner = self.state.lock();
        if inner.pending.remove(&id).is_some() && inner.close_reason.is_none() {
            if inner.abandoned.len() >= ABANDONED_BACKLOG {
                inner.abandoned.clear();
            }
            inner.abandoned.insert(id);
        }
    }

    /// Sends one line (without its newline): written at once when nothing waits before
    /// it and the socket takes it, else queued in order for the writer task. `false`
    /// when the connection is closed or the write failed (which closes it).
    pub(crate) fn send(&self, line: String) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let mut queue = self.outgoing.lock();
        let Some(stream) = queue.stream.as_ref() else {
            return false;
        };
        if queue.lines.is_empty() && !queue.writing {
            match stream.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => {
                    bytes.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    drop(queue);
                    self.state.close(CloseReason::Gone);
                    return false;
                }
            }
        }
        queue.lines.push_back(bytes);
        drop(queue);
        self.outgoing.queued.notify_one();
        true
    }

    /// Whether the kernel reports that the peer hung up (see [`Stream::hung_up`]).
    pub(crate) fn hung_up(&self) -> bool {
        self.outgoing.lock().stream.as_ref().is_none_or(Stream::hung_up)
    }

    /// A receiver for every event read after this call; it reports `Closed` once
    /// the connection has closed.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        match &self.state.lock().events {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Whether the connection has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().close_reason.is_some()
    }

    /// How many non-fatal protocol problems were noted so far.
    pub(crate) fn noted(&self) -> u64 {
        self.state.lock().noted
    }

    /// The problems noted after [`Connection::noted`] returned `before`: how many, and
    /// the last one.
    pub(crate) fn noise_since(&self, before: u64) -> Option<Noise> {
        let inner = self.state.lock();
        let lines = inner.noted.checked_sub(before).filter(|n| *n > 0)?;
        let last = inner.notes.back()?.clone();
        Some(Noise { lines, last })
    }

    /// Recent non-fatal protocol problems, oldest first.
    pub(crate) fn notes(&self) -> Vec<String> {
        self.state.lock().notes.iter().cloned().collect()
    }
}

async fn read_loop(state: Arc<State>, mut lines: FramedRead<StreamReader, LinesCodec>) {
    let reason = loop {
        match lines.next().await {
            Some(Ok(line)) => state.dispatch(&line),
            None => break CloseReason::Gone,
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                break CloseReason::Protocol(format!("line longer than {MAX_LINE_BYTES} bytes"))
            }
            Some(Err(LinesCodecError::Io(e))) if e.kind() == io::ErrorKind::InvalidData => {
                break CloseReason::Protocol("line is not valid UTF-8".to_owned())
            }
            Some(Err(LinesCodecError::Io(_))) => break CloseReason::Gone,
        }
    };
    state.close(reason);
}

/// Writes what [`Connection::send`] could not, in order, as the socket takes it; lets
/// go of the socket when the connection closes.
async fn write_loop(state: Arc<State>, outgoing: Arc<Outgoing>, mut closed: watch::Receiver<bool>) {
    write_queued(&state, &outgoing, &mut closed).await;
    let mut queue = outgoing.lock();
    queue.stream = None;
    queue.lines.clear();
}

async fn write_queued(state: &State, outgoing: &Outgoing, closed: &mut watch::Receiver<bool>) {
    loop {
        let next = {
            let mut queue = outgoing.lock();
            let next = queue.lines.pop_front();
            queue.writing = next.is_some();
            next.zip(queue.stream.clone())
        };
        let Some((mut rest, stream)) = next else {
            tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => return,
                () = outgoing.queued.notified() => continue,
            }
        };
        while !rest.is_empty() {
            let writable = tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => return,
                writable = stream.writable() => writable,
            };
            let written = writable.and_then(|()| match stream.try_write(&rest) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                other => other,
            });
            match written {
                Ok(n) => {
                    rest.drain(..n);
                }
                Err(_) => {
                    state.close(CloseReason::Gone);
                    return;
                }
            }
        }
        outgoing.lock().writing = false;
    }
}
