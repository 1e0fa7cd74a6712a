//! Where a QMP monitor listens, and the label that names it in errors.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::FutureExt;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An open monitor stream, shared by the connection's reader, its writers and whoever
/// asks whether the peer hung up. Every operation takes `&self` (tokio's readiness and
/// `try_read`/`try_write`), so a command line is written straight from the caller's
/// task, and the kernel's word that the peer closed is seen as soon as the runtime has
/// polled it, whichever task would read it next.
#[derive(Debug, Clone)]
pub(crate) struct Stream(Arc<Socket>);

#[derive(Debug)]
enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Writes what the socket takes now, without waiting.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Socket::Unix(s) => s.try_write(buf),
            Socket::Tcp(s) => s.try_write(buf),
        }
    }

    /// Waits until the socket may take more.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match &*self.0 {
            Socket::Unix(s) => s.writable().await,
            Socket::Tcp(s) => s.writable().await,
        }
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &*self.0 {
            Socket::Unix(s) => s.poll_read_ready(cx),
            Socket::Tcp(s) => s.poll_read_ready(cx),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &*self.0 {
            Socket::Unix(s) => s.try_read(buf),
            Socket::Tcp(s) => s.try_read(buf),
        }
    }

    /// Whether the kernel has reported that the peer closed the connection (or that it
    /// failed). Reads the readiness the runtime last polled: no system call, no wait,
    /// and no need for the reader to have run.
    pub(crate) fn hung_up(&self) -> bool {
        let both = Interest::READABLE.add(Interest::WRITABLE);
        let ready = match &*self.0 {
            Socket::Unix(s) => s.ready(both).now_or_never(),
            Socket::Tcp(s) => s.ready(both).now_or_never(),
        };
        match ready {
            Some(Ok(ready)) => ready.is_read_closed() || ready.is_write_closed(),
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// The stream as the line reader reads it.
    pub(crate) fn reader(&self) -> StreamReader {
        StreamReader(self.clone())
    }
}

/// The reading side of a [`Stream`], for the line codec.
#[derive(Debug)]
pub(crate) struct StreamReader(Stream);

impl AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The readiness was stale; it is cleared, so the next poll waits.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Address of a QMP monitor socket (`-qmp unix:...` or `-qmp tcp:...` on QEMU's side).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QmpEndpoint {
    /// A unix domain socket at this path.
    Unix(PathBuf),
    /// A TCP socket at this address.
    Tcp(SocketAddr),
}

impl fmt::Display for QmpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpEndpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            QmpEndpoint::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl QmpEndpoint {
    /// Opens a stream to the monitor; for a unix socket, also the peer's process id as
    /// the kernel reports it.
    pub(crate) async fn open(&self) -> io::Result<(Stream, Option<u32>)> {
        match self {
            QmpEndpoint::Unix(path) => {
                let stream = UnixStream::connect(path).await?;
                let pid = stream
                    .peer_cred()
                    .ok()
                    .and_then(|cred| cred.pid())
                    .and_then(|pid| u32::try_from(pid).ok());
                Ok((Stream(Arc::new(Socket::Unix(stream))), pid))
            }
            QmpEndpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok((Stream(Arc::new(Socket::Tcp(stream))), None))
            }
        }
    }
}

/// A monitor as errors name it: the caller's label plus the endpoint's address,
/// displayed as `source (unix:/run/src.qmp)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QmpPeer {
    /// The caller's name for this monitor, e.g. `source` or `destination`.
    pub label: String,
    /// The monitor's address.
    pub endpoint: QmpEndpoint,
}

impl fmt::Display for QmpPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.label, self.endpoint)
    }
}
