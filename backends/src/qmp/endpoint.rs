//! Where a QMP monitor listens, and the label that names it in errors.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// The read half of an open monitor connection.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of an open monitor connection.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

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
    /// Opens a stream to the monitor and splits it into owned halves; for a unix
    /// socket, also the peer's process id as the kernel reports it.
    pub(crate) async fn open(&self) -> io::Result<(ReadHalf, WriteHalf, Option<u32>)> {
        match self {
            QmpEndpoint::Unix(path) => {
                let stream = UnixStream::connect(path).await?;
                let pid = stream
                    .peer_cred()
                    .ok()
                    .and_then(|cred| cred.pid())
                    .and_then(|pid| u32::try_from(pid).ok());
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write), pid))
            }
            QmpEndpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write), None))
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
