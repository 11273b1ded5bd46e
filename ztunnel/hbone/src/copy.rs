//! Relay bytes between a socket and an HBONE tunnel, both directions at once, without
//! intermediate copies: socket reads land in a `BytesMut` whose frozen chunks go to h2 as they
//! are, and received DATA chunks are written to the socket straight from h2's buffers.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::stream::{H2Stream, RecvHalf, SendHalf};

/// First read size from the socket: small, so that idle or interactive connections stay cheap.
const INITIAL_READ_SIZE: usize = 8 * 1024;
/// Largest read size; reached by doubling while reads keep filling the buffer (bulk transfer).
const MAX_READ_SIZE: usize = crate::config::MAX_RELAY_READ;

/// Bytes relayed in each direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes read from the socket and sent into the tunnel.
    pub to_tunnel: u64,
    /// Bytes received from the tunnel and written to the socket.
    pub from_tunnel: u64,
}

/// Which side of the relay failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reading from or writing to the socket.
    Socket,
    /// Sending into or receiving from the tunnel.
    Tunnel,
}

/// A relay that ended with an error; carries the bytes moved until then (for metrics/logs).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Socket -> tunnel failed.
    #[error(
        "relaying socket -> tunnel failed on the {side:?} side after {transferred:?}: {source}"
    )]
    ToTunnel {
        /// Which end failed.
        side: Side,
        /// Bytes relayed before the failure.
        transferred: Transferred,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Tunnel -> socket failed.
    #[error(
        "relaying tunnel -> socket failed on the {side:?} side after {transferred:?}: {source}"
    )]
    FromTunnel {
        /// Which end failed.
        side: Side,
        /// Bytes relayed before the failure.
        transferred: Transferred,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl CopyError {
    /// Bytes relayed in each direction before the failure.
    pub fn transferred(&self) -> Transferred {
        match self {
            CopyError::ToTunnel { transferred, .. } | CopyError::FromTunnel { transferred, .. } => {
                *transferred
            }
        }
    }
}

/// Relays between `socket` and `tunnel` until both directions reached end of stream.
///
/// End of stream in one direction is passed on as a half-close (socket EOF -> END_STREAM,
/// END_STREAM -> `shutdown(Write)` of the socket) while the other direction keeps flowing.
/// On a socket-side error the tunnel is reset (`CANCEL`) so the peer learns about it; on a
/// tunnel-side error the caller should drop (or reset) the socket.
pub async fn copy_bidirectional<S>(
    socket: &mut S,
    tunnel: &mut H2Stream,
) -> Result<Transferred, CopyError>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut up = Upload::default();
    let mut down = Download::default();
    let (mut up_done, mut down_done) = (false, false);
    let result = poll_fn(|cx| {
        if !up_done {
            match up.poll(cx, &mut *socket, &mut tunnel.send) {
                Poll::Ready(Ok(())) => up_done = true,
                Poll::Ready(Err((side, source))) => {
                    let transferred = totals(&up, &down);
                    return Poll::Ready(Err(CopyError::ToTunnel {
                        side,
                        transferred,
                        source,
                    }));
                }
                Poll::Pending => {}
            }
        }
        if !down_done {
            match down.poll(cx, &mut *socket, &mut tunnel.recv) {
                Poll::Ready(Ok(())) => down_done = true,
                Poll::Ready(Err((side, source))) => {
                    let transferred = totals(&up, &down);
                    return Poll::Ready(Err(CopyError::FromTunnel {
                        side,
                        transferred,
                        source,
                    }));
                }
                Poll::Pending => {}
            }
        }
        if up_done && down_done {
            Poll::Ready(Ok(totals(&up, &down)))
        } else {
            Poll::Pending
        }
    })
    .await;
    if let Err(
        CopyError::ToTunnel {
            side: Side::Socket, ..
        }
        | CopyError::FromTunnel {
            side: Side::Socket, ..
        },
    ) = &result
    {
        tunnel.reset(Reason::CANCEL);
    }
    result
}

fn totals(up: &Upload, down: &Download) -> Transferred {
    Transferred {
        to_tunnel: up.bytes,
        from_tunnel: down.bytes,
    }
}

type DirResult = Result<(), (Side, io::Error)>;

/// Socket -> tunnel.
struct Upload {
    buf: BytesMut,
    /// Read but not yet handed to h2.
    chunk: Bytes,
    read_size: usize,
    eof: bool,
    bytes: u64,
}

impl Default for Upload {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: Bytes::new(),
            read_size: INITIAL_READ_SIZE,
            eof: false,
            bytes: 0,
        }
    }
}

impl Upload {
    fn poll<S>(
        &mut self,
        cx: &mut Context<'_>,
        socket: &mut S,
        send: &mut SendHalf,
    ) -> Poll<DirResult>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        loop {
            if !self.chunk.is_empty() {
                let n = ready!(send.poll_send_some(cx, &mut self.chunk))
                    .map_err(|e| (Side::Tunnel, e))?;
                self.bytes += n as u64;
                continue;
            }
            if self.eof {
                return Poll::Ready(send.close().map_err(|e| (Side::Tunnel, e)));
            }
            if self.buf.capacity() < self.read_size {
                self.buf.reserve(self.read_size);
            }
            let space = self.buf.capacity() - self.buf.len();
            let n = ready!(poll_read_buf(Pin::new(&mut *socket), cx, &mut self.buf))
                .map_err(|e| (Side::Socket, e))?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            if n == space && self.read_size < MAX_READ_SIZE {
                self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
            }
            self.chunk = self.buf.split().freeze();
        }
    }
}

/// Tunnel -> socket.
#[derive(Default)]
struct Download {
    /// Received but not yet written to the socket (capacity released as it is written).
    chunk: Bytes,
    need_flush: bool,
    eof: bool,
    bytes: u64,
}

impl Download {
    fn poll<S>(
        &mut self,
        cx: &mut Context<'_>,
        socket: &mut S,
        recv: &mut RecvHalf,
    ) -> Poll<DirResult>
    where
        S: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            if !self.chunk.is_empty() {
                let n = ready!(Pin::new(&mut *socket).poll_write(cx, &self.chunk))
                    .map_err(|e| (Side::Socket, e))?;
                if n == 0 {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes");
                    return Poll::Ready(Err((Side::Socket, e)));
                }
                self.chunk.advance(n);
                recv.release(n);
                self.bytes += n as u64;
                self.need_flush = true;
                continue;
            }
            if self.eof {
                ready!(Pin::new(&mut *socket).poll_shutdown(cx)).map_err(|e| (Side::Socket, e))?;
                return Poll::Ready(Ok(()));
            }
            match recv.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => self.chunk = chunk,
                Poll::Ready(Ok(None)) => self.eof = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Tunnel, e))),
                Poll::Pending => {
                    if self.need_flush {
                        ready!(Pin::new(&mut *socket).poll_flush(cx))
                            .map_err(|e| (Side::Socket, e))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
