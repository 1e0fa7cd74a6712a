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
    /// Opens a stream to the monitor and splits it into owned halves.
    pub(crate) async fn open(&self) -> io::Result<(ReadHalf, WriteHalf)> {
        match self {
            QmpEndpoint::Unix(path) => {
                let (read, write) = UnixStream::connect(path).await?.into_split();
                Ok((Box::new(read), Box::new(write)))
            }
            QmpEndpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write)))
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
