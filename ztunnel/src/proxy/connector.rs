//! Sockets for a pod: created inside its network namespace with ztunnel's mark, so the pod's redirect rules
//! let them through (DESIGN.md 4.3, 4.4).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hbone::{Connector, PoolKey};
use tokio::net::TcpStream;

use crate::identity::CertManager;
use crate::socket::{Congestion, ConnectBuilder, PodNetns, SocketError, into_tokio_socket};

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
    let socket = build_in_pod(netns, dst, congestion, None)?.map_err(io::Error::other)?;
    connect_with_timeout(socket, dst).await
}

/// Connects to the pod's application at `dst` from the original client's address `client`, as
/// Istio's ztunnel does: the socket is bound to it with `IP_TRANSPARENT`, and the pod's
/// `fwmark 0x111 lookup 100` rule (DESIGN.md 4.4) routes the application's replies back to it, so
/// the application sees who called (logs, IP allow-lists). A client of the other address family,
/// or a kernel that refuses `IP_TRANSPARENT` (no CAP_NET_ADMIN), gets a connection from the pod's
/// own address instead: the source address is information for the application, not a check.
pub async fn connect_app(
    netns: &PodNetns,
    dst: SocketAddr,
    client: IpAddr,
    congestion: Option<Congestion>,
) -> io::Result<TcpStream> {
    if client.is_ipv4() == dst.is_ipv4() {
        let source = SocketAddr::new(client, 0);
        match build_in_pod(netns, dst, congestion.clone(), Some(source))? {
            Ok(socket) => return connect_with_timeout(socket, dst).await,
            Err(error) => {
                tracing::debug!(%error, %client, "cannot connect from the client's address; using the pod's");
            }
        }
    }
    connect_in_pod_with(netns, dst, congestion).await
}

/// A socket for `dst` made inside the pod's namespace with ztunnel's mark and `TCP_NODELAY`
/// (`ConnectBuilder`'s defaults), `congestion`, and a transparent `source` if given. The outer
/// error is entering the namespace; the inner one setting the socket up, which a caller may
/// recover from.
fn build_in_pod(
    netns: &PodNetns,
    dst: SocketAddr,
    congestion: Option<Congestion>,
    source: Option<SocketAddr>,
) -> io::Result<Result<socket2::Socket, SocketError>> {
    netns
        .run(move || -> Result<_, SocketError> {
            let builder = ConnectBuilder::new(dst).congestion(congestion);
            Ok(match source {
                Some(source) => builder.transparent_source(source),
                None => builder,
            }
            .build())
        })
        .map_err(io::Error::other)
}

async fn connect_with_timeout(socket: socket2::Socket, dst: SocketAddr) -> io::Result<TcpStream> {
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
