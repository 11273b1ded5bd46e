//! One-shot client: connect, send, half-close, read everything back.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What to send where.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The server.
    pub to: SocketAddr,
    /// Bytes to write before half-closing.
    pub data: Vec<u8>,
    /// Deadline for the whole exchange.
    pub timeout: Duration,
}

/// Why an exchange failed. Each kind has its own exit code, so tests can tell a policy reset
/// from a refused port from a black hole.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing listens at the destination (RST to the SYN).
    #[error("connection to {to} refused: nothing listens there, or a proxy refused it")]
    Refused {
        /// The destination.
        to: SocketAddr,
    },
    /// The deadline passed.
    #[error("timed out after {after:?} while {stage} {to}: packets dropped, or no answer")]
    Timeout {
        /// The destination.
        to: SocketAddr,
        /// What we were doing: connecting to, writing to, reading from.
        stage: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The peer reset the connection after it was established.
    #[error("connection to {to} reset while {stage} (policy deny or proxy failure?)")]
    Reset {
        /// The destination.
        to: SocketAddr,
        /// What we were doing.
        stage: &'static str,
    },
    /// No route to the destination.
    #[error("{to} unreachable: {source} (check routes inside this namespace)")]
    Unreachable {
        /// The destination.
        to: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// Anything else.
    #[error("I/O error while {stage} {to}: {source}")]
    Io {
        /// The destination.
        to: SocketAddr,
        /// What we were doing.
        stage: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}

impl SendError {
    /// The process exit code `mesh-testapp send` uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            SendError::Io { .. } => 1,
            SendError::Refused { .. } => 3,
            SendError::Timeout { .. } => 4,
            SendError::Reset { .. } => 5,
            SendError::Unreachable { .. } => 6,
        }
    }

    fn classify(to: SocketAddr, stage: &'static str, after: Duration, e: io::Error) -> SendError {
        match e.kind() {
            ErrorKind::ConnectionRefused => SendError::Refused { to },
            ErrorKind::TimedOut | ErrorKind::WouldBlock => SendError::Timeout { to, stage, after },
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                SendError::Reset { to, stage }
            }
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                SendError::Unreachable { to, source: e }
            }
            _ => SendError::Io {
                to,
                stage,
                source: e,
            },
        }
    }
}

/// Connects to `opts.to`, writes `opts.data`, half-closes and returns everything the server sent
/// until it closed.
pub fn send(opts: &SendOptions) -> Result<Vec<u8>, SendError> {
    let to = opts.to;
    let deadline = Instant::now() + opts.timeout;
    let err = |stage, e| SendError::classify(to, stage, opts.timeout, e);
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(SendError::Timeout {
                to,
                stage: "reading from",
                after: opts.timeout,
            })
    };
    let mut stream =
        TcpStream::connect_timeout(&to, opts.timeout).map_err(|e| err("connecting to", e))?;
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| err("writing to", e))?;
    stream
        .write_all(&opts.data)
        .map_err(|e| err("writing to", e))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| err("writing to", e))?;
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(|e| err("reading from", e))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(err("reading from", e)),
        }
    }
}
