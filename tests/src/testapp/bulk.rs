//! Bulk client: streams a known byte pattern to an echo server while reading the echo back on
//! another thread, and checks every byte (order included) and the end of stream.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How much to stream where.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// The echo server.
    pub to: SocketAddr,
    /// Bytes to stream (and expect back).
    pub bytes: u64,
    /// Deadline for the whole exchange.
    pub timeout: Duration,
}

/// Why a bulk exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// Connecting, writing or reading failed.
    #[error("{stage} {to} failed after {done} bytes: {source}")]
    Io {
        /// The server.
        to: SocketAddr,
        /// What we were doing.
        stage: &'static str,
        /// Bytes written (for `writing to`) or read back (otherwise) until then.
        done: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// A byte came back changed or out of order.
    #[error("byte {offset} came back as {got:#04x}, sent {sent:#04x}")]
    Corrupt {
        /// Offset in the stream.
        offset: u64,
        /// What came back.
        got: u8,
        /// What was sent there.
        sent: u8,
    },
    /// The echo ended early or went on past what was sent.
    #[error("{got} bytes came back, {sent} were sent")]
    Length {
        /// Bytes read back before end of stream.
        got: u64,
        /// Bytes sent.
        sent: u64,
    },
}

/// The byte at `offset` of the stream (a prime period, so shifted data does not line up).
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// Streams `opts.bytes` of [`pattern`], half-closes, and checks the echo; returns the time it took.
pub fn bulk(opts: &BulkOptions) -> Result<Duration, BulkError> {
    let to = opts.to;
    let io_err = move |stage, done| {
        move |source| BulkError::Io {
            to,
            stage,
            done,
            source,
        }
    };
    let started = Instant::now();
    let stream =
        TcpStream::connect_timeout(&to, opts.timeout).map_err(io_err("connecting to", 0))?;
    let timeout = Some(opts.timeout);
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(io_err("configuring the socket to", 0))?;
    let mut writer = stream
        .try_clone()
        .map_err(io_err("cloning the socket to", 0))?;
    let total = opts.bytes;
    let sending = std::thread::spawn(move || -> Result<(), BulkError> {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let n = chunk
                .len()
                .min(usize::try_from(total - sent).unwrap_or(usize::MAX));
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(sent + k as u64);
            }
            writer
                .write_all(&chunk[..n])
                .map_err(io_err("writing to", sent))?;
            sent += n as u64;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(io_err("half-closing", sent))
    });
    let received = read_back(stream, total, to);
    let sent = sending.join().unwrap_or_else(|_| {
        Err(BulkError::Io {
            to,
            stage: "writing to",
            done: 0,
            source: io::Error::other("the writing thread panicked"),
        })
    });
    received?;
    sent?;
    Ok(started.elapsed())
}

fn read_back(mut stream: TcpStream, total: u64, to: SocketAddr) -> Result<(), BulkError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) if got == total => return Ok(()),
            Ok(0) => return Err(BulkError::Length { got, sent: total }),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(BulkError::Io {
                    to,
                    stage: "reading from",
                    done: got,
                    source,
                });
            }
        };
        for (k, b) in buf[..n].iter().enumerate() {
            let offset = got + k as u64;
            if offset >= total {
                return Err(BulkError::Length {
                    got: got + n as u64,
                    sent: total,
                });
            }
            if *b != pattern(offset) {
                return Err(BulkError::Corrupt {
                    offset,
                    got: *b,
                    sent: pattern(offset),
                });
            }
        }
        got += n as u64;
    }
}
