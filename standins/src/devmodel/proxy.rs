//! The running proxy: its listener, client tasks, and the state they share with the hub.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use backends::qmp::MAX_LINE_BYTES;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{AnyDelimiterCodec, FramedRead};

use super::config::ProxyConfig;
use super::fdpass::FdRead;
use super::hub::{Hub, HubMsg};
use super::rewrite::{parse, Message};
use super::state::Model;
use super::DevModelError;

/// How long [`Proxy::start`] waits for the upstream monitor's handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines of one side of a QMP connection, `\n`-delimited, as bytes (not necessarily UTF-8).
pub(crate) type Lines<R> = FramedRead<R, AnyDelimiterCodec>;

/// A line reader over `read` with the QMP client's line limit.
pub(crate) fn lines<R: tokio::io::AsyncRead>(read: R) -> Lines<R> {
    FramedRead::new(
        read,
        AnyDelimiterCodec::new_with_max_length(vec![b'\n'], vec![b'\n'], MAX_LINE_BYTES),
    )
}

/// State the hub and the [`Proxy`] handle share.
pub(crate) struct Shared {
    model: Mutex<Model>,
}

impl Shared {
    /// The model, even if a panicking task poisoned the lock (the model stays usable).
    pub(crate) fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running proxy. Dropping it stops it: its tasks end, client connections close, the
/// connection to QEMU closes, and the listening socket is removed.
pub struct Proxy {
    shared: Arc<Shared>,
    upstream: PathBuf,
    listen: PathBuf,
    /// The proxy created the listening socket's file (and removes it when dropped).
    owns_listen: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream)
            .field("listen", &self.listen)
            .finish()
    }
}

impl Proxy {
    /// Connects to the real QEMU (negotiating, and reading its run state and `events`
    /// capability), then listens on `cfg.listen`. Must run inside a tokio runtime.
    ///
    /// The proxy holds QEMU's monitor from now on: QEMU serves one QMP client per
    /// socket, so everyone else must come through the proxy (or another `-qmp` socket).
    pub async fn start(cfg: ProxyConfig) -> Result<Proxy, DevModelError> {
        Proxy::start_inner(cfg, None).await
    }

    /// As [`Proxy::start`], but serves clients on `listener`, a socket someone else
    /// already bound and listens on (e.g. one libvirt passed to QEMU as `fd=N`);
    /// `cfg.listen` only names it (in errors and [`Proxy::listen_path`]) and is neither
    /// created nor removed. Clients that connected before the proxy started wait in the
    /// listener's backlog and are served once the upstream handshake is done.
    pub async fn start_on(
        cfg: ProxyConfig,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<Proxy, DevModelError> {
        Proxy::start_inner(cfg, Some(listener)).await
    }

    async fn start_inner(
        cfg: ProxyConfig,
        listener: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Proxy, DevModelError> {
        cfg.validate()?;
        let upstream_error = |detail: String| DevModelError::Upstream {
            path: cfg.upstream.clone(),
            detail,
        };
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&cfg.upstream)).await;
        let upstream = match handshake {
            Err(_) => {
                return Err(upstream_error(
                    "no QMP handshake within 5 s (is another client connected?)".into(),
                ))
            }
            Ok(Err(detail)) => return Err(upstream_error(detail)),
            Ok(Ok(upstream)) => upstream,
        };
        let owns_listen = listener.is_none();
        let listener = match listener {
            None => bind(&cfg.listen)?,
            Some(listener) => listener
                .set_nonblocking(true)
                .and_then(|()| UnixListener::from_std(listener))
                .map_err(|source| DevModelError::Listen {
                    path: cfg.listen.clone(),
                    source,
                })?,
        };
        let mut model = Model::new(&cfg);
        model.set_initial(upstream.vm_running, upstream.events_cap);
        let shared = Arc::new(Shared {
            model: Mutex::new(model),
        });
        let (hub_tx, hub_rx) = mpsc::unbounded_channel();
        let hub = Hub::new(
            Arc::clone(&shared),
            upstream.write,
            &upstream.greeting,
            hub_tx.clone(),
        );
        let tasks = vec![
            tokio::spawn(hub.run(upstream.lines, hub_rx)),
            tokio::spawn(accept(hub_tx, listener)),
        ];
        Ok(Proxy {
            shared,
            upstream: cfg.upstream,
            listen: cfg.listen,
            owns_listen,
            tasks,
        })
    }

    /// Whether QEMU closed its monitor (it exited, or is exiting): the proxy has nothing
    /// left to serve, and its clients were disconnected.
    pub fn upstream_closed(&self) -> bool {
        self.tasks.first().is_some_and(JoinHandle::is_finished)
    }

    /// Every modelled device state change so far, oldest first: (device id, state, when).
    /// Recorded whether or not an event was emitted for it.
    pub fn timeline(&self) -> Vec<(String, String, SystemTime)> {
        self.shared.model().timeline()
    }

    /// The socket the proxy serves.
    pub fn listen_path(&self) -> &Path {
        &self.listen
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if self.owns_listen {
            let _ = std::fs::remove_file(&self.listen);
        }
    }
}

/// Binds the listening socket, replacing a stale socket file (never another file).
fn bind(path: &Path) -> Result<UnixListener, DevModelError> {
    let listen_error = |source| DevModelError::Listen {
        path: path.to_owned(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path).map_err(listen_error)?;
        }
    }
    UnixListener::bind(path).map_err(listen_error)
}

/// The proxy's negotiated connection to QEMU and what it learnt on the way.
struct Upstream {
    lines: Lines<OwnedReadHalf>,
    write: OwnedWriteHalf,
    greeting: Value,
    vm_running: bool,
    events_cap: bool,
}

/// Greeting, `qmp_capabilities`, then the VM's run state and the `events` capability.
async fn handshake(path: &Path) -> Result<Upstream, String> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut lines = lines(read);
    let greeting = match lines.next().await {
        Some(Ok(line)) if matches!(parse(&line), Some(Message::Other)) => {
            serde_json::from_slice::<Value>(&line).map_err(|e| e.to_string())?
        }
        _ => return Err("no QMP greeting".into()),
    };
    let mut results = Vec::new();
    for name in ["qmp_capabilities", "query-status", "query-migrate-capabilities"] {
        let id = Value::from(format!("devmodel-{name}"));
        let line = format!("{}\n", json!({"execute": name, "id": id}));
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let line = match lines.next().await {
                Some(Ok(line)) => line,
                _ => return Err(format!("connection closed waiting for {name}")),
            };
            if let Some(Message::Reply {
                id: Some(got),
                ok,
                object,
            }) = parse(&line)
            {
                if got == id {
                    if !ok {
                        return Err(format!("{name} failed: {}", Value::Object(object)));
                    }
                    results.push(object.get("return").cloned().unwrap_or(Value::Null));
                    break;
                }
            }
        }
    }
    let vm_running = results
        .get(1)
        .and_then(|s| s.get("running"))
        .and_then(Value::as_bool);
    let events_cap = results
        .get(2)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("capability").and_then(Value::as_str) == Some("events")
                && c.get("state") == Some(&json!(true))
        });
    Ok(Upstream {
        lines,
        write,
        greeting,
        vm_running: vm_running.unwrap_or(false),
        events_cap,
    })
}

/// Accepts client connections; each is served until it or the hub goes away.
async fn accept(hub: mpsc::UnboundedSender<HubMsg>, listener: UnixListener) {
    let mut clients = JoinSet::new();
    let mut next = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next += 1;
                    clients.spawn(serve(hub.clone(), next, stream));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
}

/// One client: its lines go to the hub, the hub's bytes go to it.
async fn serve(hub: mpsc::UnboundedSender<HubMsg>, client: u64, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let (out, mut outgoing) = mpsc::unbounded_channel();
    if hub.send(HubMsg::Connected { client, out }).is_err() {
        return;
    }
    let mut incoming = lines(FdRead::new(read));
    loop {
        tokio::select! {
            line = incoming.next() => match line {
                Some(Ok(line)) => {
                    // Descriptors sent with this line (or before it) go with it.
                    let fds = std::mem::take(&mut incoming.get_mut().fds);
                    if hub.send(HubMsg::Line { client, line: line.to_vec(), fds }).is_err() {
                        break;
                    }
                }
                _ => break,
            },
            bytes = outgoing.recv() => match bytes {
                Some(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = hub.send(HubMsg::Closed { client });
}
