//! File descriptors passed over QMP (`SCM_RIGHTS`), which the proxy passes on.
//!
//! A QMP client may send file descriptors with a command (libvirt sends the migration
//! socket it connected with `getfd`, then `migrate fd:...`); QEMU keeps them for the
//! command that names them. The proxy reads each client with [`FdRead`], which keeps
//! what arrives, and sends them to QEMU with the client's next forwarded command
//! ([`write_with_fds`]).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// At most this many descriptors arrive with one read (QEMU's own limit is similar).
const MAX_FDS: usize = 16;

/// A client's read half that keeps the descriptors sent with its bytes.
pub(crate) struct FdRead {
    half: OwnedReadHalf,
    /// Received and not yet passed on, oldest first.
    pub(crate) fds: Vec<OwnedFd>,
}

impl FdRead {
    pub(crate) fn new(half: OwnedReadHalf) -> FdRead {
        FdRead {
            half,
            fds: Vec::new(),
        }
    }
}

impl AsyncRead for FdRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stream = this.half.as_ref();
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let fds = &mut this.fds;
            match stream.try_io(Interest::READABLE, || {
                recv_with_fds(stream.as_raw_fd(), unfilled, fds)
            }) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Writes `bytes` to QEMU, with `fds` attached to the first of them.
pub(crate) async fn write_with_fds(
    upstream: &mut OwnedWriteHalf,
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> io::Result<()> {
    if fds.is_empty() {
        return upstream.write_all(bytes).await;
    }
    let stream = upstream.as_ref();
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            send_with_fds(stream.as_raw_fd(), bytes, &fds)
        })
        .await?;
    // Sent (or not) with the bytes: QEMU holds its own copies now.
    drop(fds);
    upstream.write_all(&bytes[sent..]).await
}

/// Room for [`MAX_FDS`] descriptors' control message, aligned for `cmsghdr`.
type ControlBuffer = [u64; 16];

/// `recvmsg` into `buf`; descriptors that came with the bytes are added to `fds`.
#[allow(unsafe_code)]
fn recv_with_fds(socket: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut control: ControlBuffer = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data, for which all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<ControlBuffer>() as _;
    // SAFETY: `msg` points at `iov` (which covers `buf`) and at `control`, all alive and
    // writable for the call, with their true lengths.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the CMSG_* macros walk the control buffer the kernel just filled, within
    // `msg.msg_controllen`; each SCM_RIGHTS message's data holds `cmsg_len - CMSG_LEN(0)`
    // bytes of descriptors, now open in this process and owned by nobody else, each read
    // unaligned and owned exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(n as usize)
}

/// `sendmsg` of `bytes` (some of them) with `fds` attached; how many bytes went.
#[allow(unsafe_code)]
fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    let raw: Vec<libc::c_int> = fds.iter().take(MAX_FDS).map(AsRawFd::as_raw_fd).collect();
    let data_len = raw.len() * size_of::<libc::c_int>();
    let mut control: ControlBuffer = [0; 16];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data, for which all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size; MAX_FDS descriptors fit `control`.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len as u32) } as _;
    // SAFETY: the control buffer is zeroed, aligned and large enough for one message of
    // `data_len` bytes (checked above), so CMSG_FIRSTHDR is non-null and its data has
    // room for `raw`; sendmsg only reads `bytes` (through `iov`) and `control`.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
        std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), data_len);
        libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::{Read, Seek, Write};

    #[tokio::test]
    async fn descriptors_sent_with_a_line_are_passed_on() {
        let (client, proxy_side) = tokio::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let (upstream, qemu_side) = tokio::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let mut file = tempfile::tempfile().unwrap_or_else(|e| panic!("{e}"));
        file.write_all(b"passed").unwrap_or_else(|e| panic!("{e}"));

        // The client sends a line with the file attached.
        let (_, mut client_write) = client.into_split();
        write_with_fds(
            &mut client_write,
            b"{\"execute\":\"getfd\"}\n",
            vec![OwnedFd::from(file)],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let (read, _proxy_write) = proxy_side.into_split();
        let mut lines = crate::devmodel::proxy::lines(FdRead::new(read));
        let line = lines.next().await.and_then(Result::ok).unwrap_or_default();
        assert_eq!(&line[..], b"{\"execute\":\"getfd\"}");
        let fds = std::mem::take(&mut lines.get_mut().fds);
        assert_eq!(fds.len(), 1);

        // The proxy passes it on, and QEMU's end gets the same file.
        let (_, mut upstream_write) = upstream.into_split();
        write_with_fds(&mut upstream_write, b"{}\n", fds)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (qemu_read, _qemu_write) = qemu_side.into_split();
        let mut qemu = crate::devmodel::proxy::lines(FdRead::new(qemu_read));
        assert_eq!(
            qemu.next().await.and_then(Result::ok).as_deref(),
            Some(&b"{}"[..])
        );
        let mut received = std::fs::File::from(qemu.get_mut().fds.remove(0));
        let mut text = String::new();
        received.rewind().unwrap_or_else(|e| panic!("{e}"));
        received
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "passed");
    }
}
