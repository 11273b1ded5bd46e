//! Connection-rate client: opens, uses and closes connections in a loop for a fixed time.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ConnRateOptions {
    /// The echo server.
    pub to: SocketAddr,
    /// How long to run.
    pub duration: Duration,
    /// Parallel client loops.
    pub concurrency: usize,
    /// Deadline of one connection (connect + exchange).
    pub timeout: Duration,
}

/// The outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnRateReport {
    /// Connections that completed a full echo exchange.
    pub connections: u64,
    /// Connections that failed (connect error, reset, wrong echo, timeout).
    pub errors: u64,
    /// Measured wall time in seconds.
    pub seconds: f64,
}

impl ConnRateReport {
    /// Completed connections per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.connections as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// One-line JSON, as `mesh-testapp connrate` prints it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "connections": self.connections,
            "errors": self.errors,
            "seconds": self.seconds,
            "per_second": self.per_second(),
        })
        .to_string()
    }
}

/// The payload each connection sends and expects echoed back.
const PAYLOAD: &[u8] = b"ping";

fn one(to: SocketAddr, timeout: Duration) -> bool {
    let exchange = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&to, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        s.write_all(PAYLOAD)?;
        s.shutdown(Shutdown::Write)?;
        let mut got = Vec::with_capacity(PAYLOAD.len());
        s.read_to_end(&mut got)?;
        Ok(got.ends_with(PAYLOAD))
    };
    exchange().unwrap_or(false)
}

/// Runs `opts.concurrency` loops of connect / write / half-close / read-to-end / close against
/// an echo server for `opts.duration`.
pub fn connrate(opts: &ConnRateOptions) -> ConnRateReport {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let workers: Vec<_> = (0..opts.concurrency.max(1))
        .map(|_| {
            let (ok, failed, to, timeout) = (ok.clone(), failed.clone(), opts.to, opts.timeout);
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let counter = if one(to, timeout) { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        // A panicking worker only loses its own counts.
        let _ = w.join();
    }
    ConnRateReport {
        connections: ok.load(Ordering::Relaxed),
        errors: failed.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    }
}
