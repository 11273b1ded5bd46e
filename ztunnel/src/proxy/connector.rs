//! Sockets for a pod: created inside its network namespace with ztunnel's mark, so the pod's redirect rules
//! let them through (DESIGN.md 4.3, 4.4).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hbone::{Connector, PoolKey};
use tokio::net::TcpStream;

use crate::identity::CertManager;
use crate::socket::{
    Congestion, ConnectBuilder, PodNetns, SocketError, ZTUNNEL_MARK, into_tokio_socket,
};

/// Opens a TCP connection to `dst` from inside the pod's namespace, marked as ztunnel's own traffic,
/// with the kernel's congestion control (passthrough: the destination may be anywhere).
pub async fn connect_in_pod(netns: &PodNetns, dst: SocketAddr) -> io::Result<TcpStream> {
    connect_in_pod_with(netns, dst, None).await
}

/// [`connect_in_pod`] with a congestion control for the socket: HBONE connections and the pod's
/// own applications.
pub async fn connect_in_pod_with(
    netns: &PodNetns,
    dst: SocketAddr,
    congestion: Option<Congestion>,
) -> io::Result<TcpStream> {
    let socket = netns
        .run(move || -> Result<_, SocketError> {
            ConnectBuilder::new(dst)
                .mark(Some(ZTUNNEL_MARK))
                .nodelay(true)
                .congestion(congestion)
                .build()
        })
        .map_err(io::Error::other)?;
    let connect = into_tokio_socket(socket).connect(dst);
    tokio::time::timeout(super::CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {dst} timed out"),
            )
        })?
}

/// The HBONE pool's view of a pod: sockets from its namespace, certificates of its identity.
pub struct PodConnector {
    netns: Arc<PodNetns>,
    certs: Arc<CertManager>,
    congestion: Option<Congestion>,
}

impl PodConnector {
    /// A connector for the pod whose namespace `netns` is in; its sockets get `congestion`.
    pub fn new(
        netns: Arc<PodNetns>,
        certs: Arc<CertManager>,
        congestion: Option<Congestion>,
    ) -> Self {
        Self {
            netns,
            certs,
            congestion,
        }
    }
}

impl Connector for PodConnector {
    /// Connects while making sure the source identity has a certificate: the pool asks for the TLS
    /// config after this, and it is then in the cache (the wait, if any, does not block the worker).
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, io::Result<TcpStream>> {
        let (netns, certs) = (self.netns.clone(), self.certs.clone());
        let (dst, src, cc) = (key.dst, key.src_identity.clone(), self.congestion.clone());
        Box::pin(async move {
            let (cert, tcp) = tokio::join!(certs.ready(&src), connect_in_pod_with(&netns, dst, cc));
            cert.map_err(io::Error::other)?;
            tcp
        })
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
