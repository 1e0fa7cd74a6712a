//! Loopback proxies a test puts between two parties to break what passes between them:
//! [`MonitorProxy`] in front of a QEMU monitor (its connections cut, or the proxy gone
//! for good), [`StreamProxy`] in the migration stream (it stops forwarding after a
//! number of bytes and holds the connections open, as a stalled link does).
//!
//! Plain threads and blocking sockets: what they forward is exactly what arrived.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a listener or a stalled pump looks whether it should stop.
const POLL: Duration = Duration::from_millis(5);

/// A socket either proxy can shut down from outside its pumps.
trait Cut: Send {
    fn cut(&self);
}

impl Cut for UnixStream {
    fn cut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Cut for TcpStream {
    fn cut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// What a proxy's threads share.
#[derive(Default)]
struct Shared {
    /// Both ends of every connection made through the proxy.
    open: Mutex<Vec<Box<dyn Cut>>>,
    /// The proxy is going away: listeners stop, stalled pumps end.
    stop: AtomicBool,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

impl Shared {
    fn keep(&self, socket: Box<dyn Cut>) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    }

    fn cut_all(&self) {
        for socket in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            socket.cut();
        }
    }
}

/// A Unix-socket proxy in front of a QEMU monitor: each connection to [`MonitorProxy::path`]
/// opens one to the monitor, and bytes pass both ways unchanged.
pub struct MonitorProxy {
    /// Where clients connect (put it in the plan instead of the monitor).
    pub path: PathBuf,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

impl MonitorProxy {
    /// Listens at `path` and forwards every connection to the monitor at `upstream`.
    pub fn start(path: &Path, upstream: &Path) -> MonitorProxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the monitor proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        let (upstream, state) = (upstream.to_path_buf(), Arc::clone(&shared));
        let accept = std::thread::spawn(move || {
            while !state.stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                state.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nonblocking(false);
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let clone = |s: &UnixStream| s.try_clone().expect("clone a proxied socket");
                state.keep(Box::new(clone(&client)));
                state.keep(Box::new(clone(&server)));
                let (c2, s2) = (clone(&client), clone(&server));
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
        MonitorProxy {
            path: path.to_path_buf(),
            shared,
            listener: Some(accept),
        }
    }

    /// Closes every connection made through the proxy, at both ends, as a broken link
    /// would; the proxy still forwards new connections.
    pub fn cut(&self) {
        self.shared.cut_all();
    }

    /// Cuts every connection and stops listening: the monitor cannot be reached through
    /// the proxy any more.
    pub fn close(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        let _ = std::fs::remove_file(&self.path);
        self.shared.cut_all();
    }

    /// How many connections were made through the proxy.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for MonitorProxy {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies `from` to `to` until either closes, then closes both.
fn pump<S: Read + Write + Cut>(mut from: S, mut to: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    from.cut();
    to.cut();
}

/// A TCP proxy for the migration stream, on a loopback port of its own, that forwards
/// to `upstream` until `stall_after` bytes have gone that way; from then on it reads
/// nothing more in either direction and keeps every connection open, so that neither
/// end sees an error: the stream simply stops moving.
pub struct StreamProxy {
    /// The port the source should send to.
    pub port: u16,
    shared: Arc<Shared>,
    stalled: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
}

impl StreamProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn stalling_after(upstream: u16, stall_after: u64) -> StreamProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stream proxy");
        let port = listener.local_addr().expect("local address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        let stalled = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (state, stall, count) = (Arc::clone(&shared), Arc::clone(&stalled), Arc::clone(&forwarded));
        std::thread::spawn(move || {
            while !state.stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                state.accepted.fetch_add(1, Ordering::SeqCst);
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let clone = |s: &TcpStream| s.try_clone().expect("clone a proxied socket");
                state.keep(Box::new(clone(&client)));
                state.keep(Box::new(clone(&server)));
                let (c2, s2) = (clone(&client), clone(&server));
                let (st1, st2) = (Arc::clone(&state), Arc::clone(&state));
                let (stall1, stall2, count1) = (Arc::clone(&stall), Arc::clone(&stall), Arc::clone(&count));
                std::thread::spawn(move || {
                    stalling_pump(client, server, &st1, &stall1, Some((&count1, stall_after)))
                });
                std::thread::spawn(move || stalling_pump(s2, c2, &st2, &stall2, None));
            }
        });
        StreamProxy {
            port,
            shared,
            stalled,
            forwarded,
        }
    }

    /// The URI to put in the plan's `[migration] uri`.
    pub fn uri(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Whether the proxy has stopped forwarding.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Bytes forwarded towards the upstream so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for StreamProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }
}

/// Copies `from` to `to`; when `budget` is given, counts the bytes and stops after
/// that many. Once the proxy has stalled (either direction reached its budget), it reads
/// nothing more and waits, the connection open, until the proxy goes away.
fn stalling_pump(
    mut from: TcpStream,
    mut to: TcpStream,
    shared: &Shared,
    stalled: &AtomicBool,
    budget: Option<(&AtomicU64, u64)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.load(Ordering::SeqCst) {
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
            }
            break;
        }
        let room = match budget {
            Some((count, limit)) => {
                (limit.saturating_sub(count.load(Ordering::SeqCst)) as usize).min(buf.len())
            }
            None => buf.len(),
        };
        if room == 0 {
            stalled.store(true, Ordering::SeqCst);
            continue;
        }
        match from.read(&mut buf[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stalled.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some((count, _)) = budget {
                    count.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
        }
    }
    from.cut();
    to.cut();
}
