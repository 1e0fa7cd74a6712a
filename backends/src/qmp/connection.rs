//! One open monitor connection: a reader task that dispatches replies and events,
//! a writer task that sends command lines, and the table of waiting commands.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::endpoint::{QmpPeer, ReadHalf, WriteHalf};
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

/// A running connection. Dropping it stops both tasks and closes the socket.
pub(crate) struct Connection {
    peer: QmpPeer,
    state: Arc<State>,
    outgoing: mpsc::UnboundedSender<String>,
    _reader: AbortOnDrop,
}

impl Connection {
    /// Spawns the reader and writer tasks on an already greeted stream.
    pub(crate) fn start(
        peer: QmpPeer,
        lines: FramedRead<ReadHalf, LinesCodec>,
        write: WriteHalf,
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
        let (outgoing, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(Arc::clone(&state), lines));
        tokio::spawn(write_loop(Arc::clone(&state), queue, write, closed_rx));
        Connection {
            peer,
            state,
            outgoing,
            _reader: AbortOnDrop(reader),
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

    /// Queues one line (without its newline) for the writer; `false` if the writer is gone.
    pub(crate) fn send(&self, line: String) -> bool {
        self.outgoing.send(line).is_ok()
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

async fn read_loop(state: Arc<State>, mut lines: FramedRead<ReadHalf, LinesCodec>) {
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

async fn write_loop(
    state: Arc<State>,
    mut queue: mpsc::UnboundedReceiver<String>,
    mut out: WriteHalf,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        let line = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => break,
            line = queue.recv() => match line {
                Some(line) => line,
                None => break,
            },
        };
        let written = tokio::select! {
            _ = closed.wait_for(|closed| *closed) => break,
            written = write_line(&mut out, line) => written,
        };
        if written.is_err() {
            state.close(CloseReason::Gone);
            break;
        }
    }
}

async fn write_line(out: &mut WriteHalf, mut line: String) -> io::Result<()> {
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    out.flush().await
}
