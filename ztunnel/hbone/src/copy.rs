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

mod bulk;
mod offload;

pub use offload::{Offload, relay_tcp};

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
    /// Whether the relay moved to another worker for a bulk transfer (see [`relay_tcp`]).
    pub offloaded: bool,
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
    let mut relay = Relay::new(None);
    loop {
        // Not watching for bulk transfer, so `Bulk` does not come; were it to, go on here.
        if let Step::Done(result) = relay.run(socket, tunnel).await {
            return result;
        }
    }
}

/// What [`Relay::run`] stopped for.
pub(crate) enum Step {
    /// Both directions finished, or one failed.
    Done(Result<Transferred, CopyError>),
    /// The relay is moving bulk data (see [`bulk::Meter`]) and may continue elsewhere; its
    /// state is consistent, nothing is in flight.
    Bulk,
}

/// The state of one relay: it can stop between polls and be resumed, on another thread too.
pub(crate) struct Relay {
    up: Upload,
    down: Download,
    up_done: bool,
    down_done: bool,
    meter: Option<bulk::Meter>,
    pub(crate) offloaded: bool,
}

impl Relay {
    /// A relay that stops with [`Step::Bulk`] once `meter` sees bulk transfer.
    pub(crate) fn new(meter: Option<bulk::Meter>) -> Self {
        Self {
            up: Upload::default(),
            down: Download::default(),
            up_done: false,
            down_done: false,
            meter,
            offloaded: false,
        }
    }

    /// Bytes relayed in each direction so far.
    pub(crate) fn totals(&self) -> Transferred {
        Transferred {
            to_tunnel: self.up.bytes,
            from_tunnel: self.down.bytes,
            offloaded: self.offloaded,
        }
    }

    /// Relays until done or failed, or (when watching) until bulk transfer shows.
    pub(crate) async fn run<S>(&mut self, socket: &mut S, tunnel: &mut H2Stream) -> Step
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        let step = poll_fn(|cx| self.poll(cx, &mut *socket, tunnel)).await;
        if let Step::Done(Err(
            CopyError::ToTunnel {
                side: Side::Socket, ..
            }
            | CopyError::FromTunnel {
                side: Side::Socket, ..
            },
        )) = &step
        {
            tunnel.reset(Reason::CANCEL);
        }
        step
    }

    fn poll<S>(&mut self, cx: &mut Context<'_>, socket: &mut S, tunnel: &mut H2Stream) -> Poll<Step>
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        if !self.up_done {
            match self.up.poll(cx, &mut *socket, &mut tunnel.send) {
                Poll::Ready(Ok(())) => self.up_done = true,
                Poll::Ready(Err((side, source))) => {
                    let transferred = self.totals();
                    return Poll::Ready(Step::Done(Err(CopyError::ToTunnel {
                        side,
                        transferred,
                        source,
                    })));
                }
                Poll::Pending => {}
            }
        }
        if !self.down_done {
            match self.down.poll(cx, &mut *socket, &mut tunnel.recv) {
                Poll::Ready(Ok(())) => self.down_done = true,
                Poll::Ready(Err((side, source))) => {
                    let transferred = self.totals();
                    return Poll::Ready(Step::Done(Err(CopyError::FromTunnel {
                        side,
                        transferred,
                        source,
                    })));
                }
                Poll::Pending => {}
            }
        }
        if self.up_done && self.down_done {
            return Poll::Ready(Step::Done(Ok(self.totals())));
        }
        // Both directions wait for something: a consistent point to stop at.
        if let Some(meter) = self.meter.as_mut()
            && meter.is_bulk(self.up.bytes + self.down.bytes)
        {
            self.meter = None;
            return Poll::Ready(Step::Bulk);
        }
        Poll::Pending
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
