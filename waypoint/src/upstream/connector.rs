//! The HBONE pool's source of sockets and TLS configs for the waypoint: plain sockets from the
//! waypoint's own network namespace (it is not captured, so no mark is needed) and client
//! certificates of its own identity.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hbone::{Connector, PoolKey};
use tokio::net::TcpStream;
use ztunnel::identity::CertManager;

/// [`Connector`] for the waypoint's upstream tunnels.
pub struct WaypointConnector {
    certs: Arc<CertManager>,
}

impl WaypointConnector {
    /// A connector presenting certificates from `certs`.
    pub fn new(certs: Arc<CertManager>) -> Self {
        Self { certs }
    }
}

impl Connector for WaypointConnector {
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, io::Result<TcpStream>> {
        let dst = key.dst;
        Box::pin(async move { TcpStream::connect(dst).await })
    }

    fn tls_config(
        &self,
        key: &PoolKey,
    ) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self
            .certs
            .client_config(&key.src_identity, Some(&key.dst_identity))?)
    }
}
