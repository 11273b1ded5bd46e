//! Blocking `SOCK_SEQPACKET` transport: one protobuf message per datagram, with file
//! descriptors passed as `SCM_RIGHTS`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};
use nix::sys::stat::{SFlag, lstat};
use nix::sys::time::TimeVal;

use super::command::{Command, CommandError};
use super::pb::AgentRequest;

/// Largest datagram sent or accepted (64 KiB); bigger ones are refused as truncated.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// File descriptors a receive makes room for: two, so that "more than one" is detectable.
pub const MAX_RECV_FDS: usize = 2;
/// Pending connections the listener queues (one ztunnel per node, plus an upgrade).
const LISTEN_BACKLOG: i32 = 8;

/// Transport errors of the handoff socket.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Creating or configuring the socket failed.
    #[error("handoff socket: {op} failed: {source}")]
    Socket {
        /// The operation (`socket`, `setsockopt`...).
        op: &'static str,
        /// The OS error.
        source: Errno,
    },
    /// The listener could not bind its path.
    #[error(
        "cannot listen on handoff socket {path}: {source}; check that the directory exists and no other agent owns it"
    )]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: Errno,
    },
    /// Connecting to the agent's socket failed.
    #[error(
        "cannot connect to handoff socket {path}: {source}; check that the node agent runs and shares this path with ztunnel"
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: Errno,
    },
    /// Sending failed (peer gone: EPIPE).
    #[error("handoff send failed: {0}")]
    Send(Errno),
    /// Receiving failed.
    #[error("handoff receive failed: {0}")]
    Recv(Errno),
    /// No message arrived within the read timeout.
    #[error("handoff peer did not answer within the timeout")]
    Timeout,
    /// The peer closed the connection.
    #[error("handoff peer closed the connection")]
    Closed,
    /// A datagram or its ancillary data did not fit and was cut by the kernel.
    #[error(
        "received a truncated handoff datagram ({what}); the peer sent more than {MAX_DATAGRAM} bytes or more than {MAX_RECV_FDS} file descriptors"
    )]
    Truncated {
        /// `data` or `file descriptors`.
        what: &'static str,
    },
    /// A message to send encodes to more than [`MAX_DATAGRAM`] bytes.
    #[error("handoff message of {0} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    TooLarge(usize),
    /// A message to send encodes to nothing (no payload), which the peer would read as EOF.
    #[error("refusing to send a handoff message without payload")]
    EmptyMessage,
    /// The datagram is not a valid protobuf message of the expected type.
    #[error("handoff datagram is not a valid message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The message is well-formed but breaks the protocol.
    #[error(transparent)]
    Command(#[from] CommandError),
}

fn seqpacket_socket() -> Result<OwnedFd, HandoffError> {
    socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|source| HandoffError::Socket {
        op: "socket",
        source,
    })
}

/// The agent's listening socket.
#[derive(Debug)]
pub struct SeqPacketListener {
    fd: OwnedFd,
    path: PathBuf,
}

impl SeqPacketListener {
    /// Listens on `path`, replacing a stale socket file left there (any other kind of file is
    /// an error, never removed).
    pub fn bind(path: &Path) -> Result<Self, HandoffError> {
        let bind_err = |source| HandoffError::Bind {
            path: path.to_path_buf(),
            source,
        };
        match lstat(path) {
            Ok(st)
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                    == SFlag::S_IFSOCK =>
            {
                nix::unistd::unlink(path).map_err(bind_err)?;
            }
            Ok(_) => return Err(bind_err(Errno::EEXIST)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(bind_err(e)),
        }
        let fd = seqpacket_socket()?;
        let addr = UnixAddr::new(path).map_err(bind_err)?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(bind_err)?;
        let backlog = Backlog::new(LISTEN_BACKLOG).map_err(bind_err)?;
        socket::listen(&fd, backlog).map_err(bind_err)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Waits for the next ztunnel to connect.
    pub fn accept(&self) -> Result<SeqPacketConn, HandoffError> {
        loop {
            match socket::accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                Ok(raw) => return Ok(SeqPacketConn(unsafe { OwnedFd::from_raw_fd(raw) })),
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(HandoffError::Socket {
                        op: "accept",
                        source,
                    });
                }
            }
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for SeqPacketListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One end of a handoff connection.
#[derive(Debug)]
pub struct SeqPacketConn(pub OwnedFd);

impl AsFd for SeqPacketConn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl SeqPacketConn {
    /// Connects to the agent listening on `path`.
    pub fn connect(path: &Path) -> Result<Self, HandoffError> {
        let err = |source| HandoffError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let fd = seqpacket_socket()?;
        let addr = UnixAddr::new(path).map_err(err)?;
        loop {
            match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => return Ok(Self(fd)),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// A connected pair (both ends in this process), for tests and in-process use.
    pub fn pair() -> Result<(Self, Self), HandoffError> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|source| HandoffError::Socket {
            op: "socketpair",
            source,
        })?;
        Ok((Self(a), Self(b)))
    }

    /// Sends `msg` as one datagram, with `fd` attached as `SCM_RIGHTS` if given.
    pub fn send<M: prost::Message>(
        &self,
        msg: &M,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), HandoffError> {
        let buf = msg.encode_to_vec();
        if buf.is_empty() {
            return Err(HandoffError::EmptyMessage);
        }
        if buf.len() > MAX_DATAGRAM {
            return Err(HandoffError::TooLarge(buf.len()));
        }
        let raw: Vec<RawFd> = fd.iter().map(AsRawFd::as_raw_fd).collect();
        self.send_raw(&buf, &raw)
    }

    /// Sends raw bytes with any fds (no checks): the building block of [`Self::send`].
    pub fn send_raw(&self, buf: &[u8], fds: &[RawFd]) -> Result<(), HandoffError> {
        let iov = [IoSlice::new(buf)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match socket::sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(HandoffError::Timeout),
                Err(e) => return Err(HandoffError::Send(e)),
            }
        }
    }

    /// Receives one message and the fds that came with it (at most [`MAX_RECV_FDS`]).
    pub fn recv<M: prost::Message + Default>(&self) -> Result<(M, Vec<OwnedFd>), HandoffError> {
        let (bytes, fds) = self.recv_raw()?;
        Ok((M::decode(bytes.as_slice())?, fds))
    }

    /// ztunnel side: receives one request and validates it into a [`Command`].
    pub fn recv_command(&self) -> Result<Command, HandoffError> {
        let (req, fds) = self.recv::<AgentRequest>()?;
        Ok(Command::from_request(req, fds)?)
    }

    /// Receives one datagram's bytes and fds; every received fd is owned (closed on drop)
    /// even when the datagram is then rejected.
    pub fn recv_raw(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), HandoffError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (n, flags, fds) = loop {
            match super::sys::recvmsg_fds(self.0.as_fd(), &mut buf, MAX_RECV_FDS) {
                Ok(r) => break r,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(HandoffError::Timeout),
                Err(e) => return Err(HandoffError::Recv(e)),
            }
        };
        if flags & libc::MSG_TRUNC != 0 {
            return Err(HandoffError::Truncated { what: "data" });
        }
        if flags & libc::MSG_CTRUNC != 0 {
            return Err(HandoffError::Truncated {
                what: "file descriptors",
            });
        }
        if n == 0 && fds.is_empty() {
            return Err(HandoffError::Closed);
        }
        buf.truncate(n);
        Ok((buf, fds))
    }

    /// Makes receives fail with [`HandoffError::Timeout`] after `timeout` (`None`: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), HandoffError> {
        socket::setsockopt(&self.0, sockopt::ReceiveTimeout, &timeval(timeout)).map_err(|source| {
            HandoffError::Socket {
                op: "setsockopt(SO_RCVTIMEO)",
                source,
            }
        })
    }

    /// Makes sends fail with [`HandoffError::Timeout`] after `timeout` (`None`: wait forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<(), HandoffError> {
        socket::setsockopt(&self.0, sockopt::SendTimeout, &timeval(timeout)).map_err(|source| {
            HandoffError::Socket {
                op: "setsockopt(SO_SNDTIMEO)",
                source,
            }
        })
    }
}

fn timeval(timeout: Option<Duration>) -> TimeVal {
    // A zero timeout means "block forever" to the kernel; round tiny timeouts up to 1 µs.
    let t = timeout
        .map(|d| d.max(Duration::from_micros(1)))
        .unwrap_or_default();
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    TimeVal::new(secs as _, t.subsec_micros() as _)
}

#[cfg(test)]
#[path = "codec/tests.rs"]
mod tests;
