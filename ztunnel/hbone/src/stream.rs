//! [`H2Stream`]: one HBONE tunnel as a byte stream over one HTTP/2 stream.
//!
//! Flow control follows the data: receive capacity is released only when the reader consumed
//! the bytes, and a writer waits for send capacity before handing data to h2, so a peer that
//! stops reading stops the writer instead of making us buffer without bound.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::pool::StreamGuard;

/// Largest capacity requested from h2 at once (h2 windows are `u32`; this also keeps one huge
/// `write` from claiming a whole connection window).
const MAX_RESERVE: usize = 16 * 1024 * 1024;

/// One HBONE tunnel: the byte stream carried by one HTTP/2 `CONNECT` stream.
///
/// - Reading returns EOF when the peer half-closes (END_STREAM) or resets with `NO_ERROR`;
///   any other reset is an [`io::ErrorKind::ConnectionReset`] error.
/// - Writing waits for HTTP/2 send capacity (back-pressure); `poll_shutdown` sends END_STREAM
///   (half-close: reading continues). `poll_flush` is a no-op, the connection task flushes.
/// - Dropping the stream before both directions finished resets it (`CANCEL`).
///
/// For bulk relaying prefer [`crate::copy_bidirectional`], which avoids the copies that the
/// `AsyncRead`/`AsyncWrite` slice interfaces imply.
pub struct H2Stream {
    pub(crate) send: SendHalf,
    pub(crate) recv: RecvHalf,
    /// Keeps the pooled connection's stream count up while this tunnel lives.
    _guard: Option<StreamGuard>,
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("write_closed", &self.send.closed)
            .field("read_eof", &self.recv.eof)
            .finish_non_exhaustive()
    }
}

impl H2Stream {
    /// Wraps the two halves of an HTTP/2 stream whose `CONNECT` exchange succeeded.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send: SendHalf {
                inner: send,
                closed: false,
            },
            recv: RecvHalf {
                inner: recv,
                pending: Bytes::new(),
                eof: false,
            },
            _guard: None,
        }
    }

    pub(crate) fn with_guard(mut self, guard: StreamGuard) -> Self {
        self._guard = Some(guard);
        self
    }

    /// Sends `data` without copying it, waiting for flow-control capacity as needed.
    pub async fn send(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| self.send.poll_send_some(cx, &mut data)).await?;
        }
        Ok(())
    }

    /// Receives the next chunk without copying it; `None` at end of stream. The chunk's
    /// flow-control capacity is released to the peer as it is returned.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        let chunk = std::future::poll_fn(|cx| self.recv.poll_chunk(cx)).await?;
        if let Some(c) = &chunk {
            self.recv.release(c.len());
        }
        Ok(chunk)
    }

    /// Half-closes the sending direction (END_STREAM). Idempotent.
    pub fn close_write(&mut self) -> io::Result<()> {
        self.send.close()
    }

    /// Aborts the tunnel in both directions with RST_STREAM(`reason`).
    pub fn reset(&mut self, reason: Reason) {
        self.send.inner.send_reset(reason);
    }
}

/// The sending side of a tunnel.
pub(crate) struct SendHalf {
    inner: SendStream<Bytes>,
    closed: bool,
}

impl SendHalf {
    /// Waits until h2 grants capacity for at least one byte of `want`; returns the grant.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let want = want.min(MAX_RESERVE);
        self.inner.reserve_capacity(want);
        loop {
            let cap = self.inner.capacity();
            if cap > 0 {
                return Poll::Ready(Ok(cap.min(want)));
            }
            match ready!(self.inner.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(self.reset_error(cx, Some(e)))),
                None => return Poll::Ready(Err(self.reset_error(cx, None))),
            }
        }
    }

    /// Hands as much of `data` to h2 as the flow-control window allows (at least one byte),
    /// advancing `data`. Returns the number of bytes handed over.
    pub(crate) fn poll_send_some(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(write_after_close()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_capacity(cx, data.len()))?;
        let chunk = data.split_to(n);
        if let Err(e) = self.inner.send_data(chunk, false) {
            return Poll::Ready(Err(self.reset_error(cx, Some(e))));
        }
        Poll::Ready(Ok(n))
    }

    /// Sends END_STREAM after everything queued so far.
    pub(crate) fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.inner
            .send_data(Bytes::new(), true)
            .map_err(|e| h2_to_io(e, "HBONE half-close failed"))
    }

    /// The error to report when sending failed: the peer's reset reason when there is one.
    fn reset_error(&mut self, cx: &mut Context<'_>, err: Option<h2::Error>) -> io::Error {
        match self.inner.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => reset_to_io(reason, "HBONE stream reset while sending"),
            Poll::Ready(Err(e)) => h2_to_io(e, "HBONE connection failed while sending"),
            Poll::Pending => match err {
                Some(e) => h2_to_io(e, "HBONE stream failed while sending"),
                None => {
                    io::Error::new(io::ErrorKind::BrokenPipe, "HBONE stream closed for sending")
                }
            },
        }
    }
}

/// The receiving side of a tunnel.
pub(crate) struct RecvHalf {
    inner: RecvStream,
    /// Received bytes not yet consumed by `poll_read` (their capacity is not yet released).
    pending: Bytes,
    eof: bool,
}

impl RecvHalf {
    /// The next non-empty chunk, `None` at end of stream. The caller must [`Self::release`]
    /// the chunk's length once it consumed it.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
        }
        while !self.eof {
            match ready!(self.inner.poll_data(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => return Poll::Ready(Ok(Some(chunk))),
                None => self.eof = true,
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) && e.is_remote() => {
                    self.eof = true
                }
                Some(Err(e)) => {
                    return Poll::Ready(Err(h2_to_io(e, "HBONE stream failed while receiving")));
                }
            }
        }
        Poll::Ready(Ok(None))
    }

    /// Returns `n` consumed bytes of window to the peer.
    pub(crate) fn release(&mut self, n: usize) {
        if n > 0 {
            // An error only means the stream is already gone; nothing is owed then.
            let _ = self.inner.flow_control().release_capacity(n);
        }
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let recv = &mut self.get_mut().recv;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if recv.pending.is_empty() {
            match ready!(recv.poll_chunk(cx))? {
                Some(chunk) => recv.pending = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = recv.pending.len().min(buf.remaining());
        buf.put_slice(&recv.pending[..n]);
        recv.pending.advance(n);
        recv.release(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let send = &mut self.get_mut().send;
        if send.closed {
            return Poll::Ready(Err(write_after_close()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(send.poll_capacity(cx, buf.len()))?;
        if let Err(e) = send
            .inner
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
        {
            return Poll::Ready(Err(send.reset_error(cx, Some(e))));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().send.close())
    }
}

fn write_after_close() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "write on an HBONE stream after its sending side was closed",
    )
}

fn reset_to_io(reason: Reason, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("{what}: RST_STREAM {reason}"),
    )
}

/// Maps an h2 error onto the closest `io::ErrorKind`, keeping the h2 error as the source.
pub(crate) fn h2_to_io(err: h2::Error, what: &str) -> io::Error {
    if err.is_io() {
        return err
            .into_io()
            .unwrap_or_else(|| io::Error::other(format!("{what}: I/O error")));
    }
    let kind = if err.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if err.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("{what}: {err}"))
}
