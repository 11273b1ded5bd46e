//! ztunnel's local HTTP servers (DESIGN.md 3 and 6):
//! - admin ([`serve_admin`], default 127.0.0.1:15000): `GET /config_dump`, `GET|POST /logging`,
//!   `POST /quitquitquit`;
//! - metrics ([`serve_metrics`], default 0.0.0.0:15020): `/metrics` and `/stats/prometheus`;
//! - readiness ([`serve_readiness`], default 0.0.0.0:15021): `/healthz/ready`.
//!
//! Each takes an already bound listener (so tests bind port 0, and the caller chooses the netns)
//! and a shutdown token; cancelling it stops accepting, lets in-flight requests finish for up to
//! [`SHUTDOWN_GRACE`], and returns.

mod api;
mod server;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

pub use api::{AdminState, ConfigDumpFn, serve_admin};
pub use stats::{serve_metrics, serve_readiness};

/// Default address of the admin server: loopback only, it can change log levels and drain.
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);
/// Default address of the metrics server: all interfaces, so Prometheus can scrape it.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15020);
/// Default address of the readiness server: all interfaces, so the kubelet can probe it.
pub const DEFAULT_READINESS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 15021);
/// How long a stopping server waits for requests in flight before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A server's address could not be bound.
    #[error(
        "cannot bind the {server} server to {addr}: {err} (is another proxy already using the port?)"
    )]
    Bind {
        /// Which server (`admin`, `metrics`, `readiness`).
        server: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Underlying error.
        err: std::io::Error,
    },
}

/// Binds a listener for one of the servers, with the server's name in the error.
pub async fn bind(server: &'static str, addr: SocketAddr) -> Result<TcpListener, AdminError> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| AdminError::Bind { server, addr, err })
}

/// The readiness flag behind `/healthz/ready`: 503 until set, 200 while set. Cheap to clone; all
/// clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the proxy ready (or not ready again, e.g. while draining).
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the proxy is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
