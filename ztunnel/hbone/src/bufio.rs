//! [`ReadBuffered`]: a socket whose reads go through a buffer, for the TLS layer.
//!
//! rustls asks its transport for at most 4 KiB per read (its deframer reads in 4 KiB steps), so
//! a TLS connection moving a few Gbit/s costs one `recvfrom` per 4 KiB: on the receiving side of
//! a bulk tunnel that was 16 system calls for each one on the sending side. With this wrapper the
//! socket is read in large steps and rustls is served from memory; writes pass straight through
//! (vectored writes included).
//!
//! The buffer starts small and doubles while reads fill it, so an idle or interactive connection
//! keeps [`INITIAL_CAPACITY`] bytes and only a bulk one grows to [`MAX_CAPACITY`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffer size of a new connection.
pub const INITIAL_CAPACITY: usize = 8 * 1024;
/// Largest buffer: one read of this size replaces 64 of rustls's 4 KiB reads, and matches the
/// relay's largest socket read, so that a bulk tunnel makes one read per write of its peer.
pub const MAX_CAPACITY: usize = 256 * 1024;

/// A transport whose reads are buffered; see the module documentation.
#[derive(Debug)]
pub struct ReadBuffered<S> {
    inner: S,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
}

impl<S> ReadBuffered<S> {
    /// Wraps `inner`; no buffer is allocated before the first read.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Box::default(),
            pos: 0,
            filled: 0,
        }
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read from the transport and not yet handed to the reader.
    pub fn buffered(&self) -> usize {
        self.filled - self.pos
    }

    /// Makes the (empty) buffer ready for the next fill: allocated, and larger when the last fill
    /// used all of it.
    fn prepare(&mut self) {
        let len = self.buf.len();
        if len == 0 {
            self.buf = vec![0; INITIAL_CAPACITY].into_boxed_slice();
        } else if self.filled == len && len < MAX_CAPACITY {
            self.buf = vec![0; (len * 2).min(MAX_CAPACITY)].into_boxed_slice();
        }
        self.pos = 0;
        self.filled = 0;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBuffered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.filled {
            // A reader asking for at least a whole buffer gains nothing from it.
            if out.remaining() >= this.buf.len().max(INITIAL_CAPACITY) {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.prepare();
            let mut fill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            this.filled = fill.filled().len();
            if this.filled == 0 {
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.filled - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBuffered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&data).await.unwrap();
        drop(a);
        let mut r = ReadBuffered::new(b);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut reads = 0;
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            reads += 1;
            // After the first 4 KiB the buffer holds what the transport had ready.
            if reads == 1 {
                assert!(r.buffered() > 0, "one transport read must fill the buffer");
            }
        }
        assert_eq!(got, data);
        assert_eq!(
            r.buf.len(),
            MAX_CAPACITY,
            "bulk reads grow the buffer to the cap"
        );
    }

    #[tokio::test]
    async fn large_reads_bypass_the_buffer_and_eof_is_passed_on() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        a.write_all(b"hello").await.unwrap();
        a.shutdown().await.unwrap();
        let mut r = ReadBuffered::new(b);
        let mut big = vec![0u8; 2 * MAX_CAPACITY];
        let n = r.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"hello");
        assert_eq!(
            r.buf.len(),
            0,
            "no buffer for a reader that asks for more than it"
        );
        assert_eq!(r.read(&mut big).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = ReadBuffered::new(a);
        w.write_all(b"abc").await.unwrap();
        w.flush().await.unwrap();
        let mut got = [0u8; 3];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abc");
    }
}
