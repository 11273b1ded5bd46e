//! TLS record sizes on the wire: a bulk tunnel should carry its bytes in full 16 KiB records,
//! not leave a few bytes of every DATA frame for a record (and a `writev`) of their own.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::Result;
use hbone::{ServeOptions, TunnelRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::support::*;

/// TLS 1.3 record carrying 16 KiB of plaintext: content type byte and AEAD tag added.
const FULL_RECORD: usize = 16 * 1024 + 1 + 16;
/// Records at most this long carry a handful of plaintext bytes.
const TINY_RECORD: usize = 64;

/// Lengths of the TLS records read through a [`Tap`], parsed from the raw byte stream.
#[derive(Default)]
struct Records {
    header: Vec<u8>,
    /// Body bytes of the current record still to skip.
    skip: usize,
    lengths: Vec<usize>,
}

impl Records {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 5 {
                let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.lengths.push(len);
                self.skip = len;
                self.header.clear();
            }
        }
    }
}

/// A transport that records the TLS records it reads.
struct Tap {
    inner: TcpStream,
    records: Arc<Mutex<Records>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.records.lock().unwrap().feed(&buf.filled()[before..]);
        result
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An upstream that writes `total` bytes as fast as it can to whoever connects, then closes.
async fn start_source(total: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x42u8; 1024 * 1024];
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_tunnel_sends_full_tls_records() -> Result<()> {
    const TOTAL: usize = 32 * 1024 * 1024;
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let source = start_source(TOTAL).await;

    let records = Arc::new(Mutex::new(Records::default()));
    let tap = Tap {
        inner: TcpStream::connect(server.addr).await?,
        records: records.clone(),
    };
    let cfg = pki.client_tls(&id("client"), &id("server"));
    let name = rustls_pki_types::ServerName::IpAddress(server.addr.ip().into());
    let tls = TlsConnector::from(cfg).connect(name, tap).await?;
    let (sender, conn) = hbone::client::handshake(tls, &hbone::H2Config::default()).await?;
    tokio::spawn(conn);
    let mut tunnel = hbone::client::connect(&sender, &TunnelRequest::new(source)).await?;
    tunnel.shutdown().await?;
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = tunnel.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, TOTAL);

    let lengths = records.lock().unwrap().lengths.clone();
    let full = lengths.iter().filter(|&&l| l == FULL_RECORD).count();
    let tiny = lengths.iter().filter(|&&l| l <= TINY_RECORD).count();
    // 32 MiB is 2,048 full records. A relay that hands h2 256 KiB reads, and a TLS layer that
    // takes exactly 256 KiB per write, leaves the last 9 bytes of each frame (its header's worth)
    // for a record of their own: 128 tiny records. Handshake and control frames make a few.
    assert!(
        full >= TOTAL / (16 * 1024) * 9 / 10,
        "only {full} full records of {} for {TOTAL} bytes",
        lengths.len()
    );
    assert!(
        tiny * 100 <= full,
        "{tiny} records of <= {TINY_RECORD} bytes next to {full} full ones: DATA frames are split \
         across TLS writes"
    );
    Ok(())
}
