//! The HBONE pool's source of sockets and TLS configs for the waypoint: plain sockets from the
//! waypoint's own network namespace (it is not captured, so no mark is needed), with the tunnel
//! congestion control, and client certificates of its own identity.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hbone::{Connector, PoolKey};
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};
use ztunnel::identity::CertManager;
use ztunnel::socket::Congestion;

/// [`Connector`] for the waypoint's upstream tunnels.
pub struct WaypointConnector {
    certs: Arc<CertManager>,
    congestion: Option<Congestion>,
}

impl WaypointConnector {
    /// A connector presenting certificates from `certs`; its sockets get `congestion` (`None`:
    /// the kernel's default).
    pub fn new(certs: Arc<CertManager>, congestion: Option<Congestion>) -> Self {
        Self { certs, congestion }
    }
}

impl Connector for WaypointConnector {
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, io::Result<TcpStream>> {
        let dst = key.dst;
        let congestion = self.congestion.clone();
        Box::pin(async move {
            let socket = if dst.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(cc) = &congestion {
                cc.apply_best_effort(&SockRef::from(&socket), dst);
            }
            socket.connect(dst).await
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_identity::{CertificateAuthority, DEFAULT_TRUST_DOMAIN, SpiffeId};
    use ztunnel::identity::LocalCa;
    use ztunnel::socket::CongestionChoice;

    use super::*;

    fn connector(choice: &str) -> WaypointConnector {
        let ca = CertificateAuthority::generate(DEFAULT_TRUST_DOMAIN).expect("CA");
        let certs = Arc::new(CertManager::new(Arc::new(LocalCa::new(
            ca,
            Duration::from_secs(3600),
        ))));
        let cc = choice.parse::<CongestionChoice>().expect("choice");
        WaypointConnector::new(certs, cc.algorithm().cloned())
    }

    fn key(dst: std::net::SocketAddr) -> PoolKey {
        let id = SpiffeId::new(DEFAULT_TRUST_DOMAIN, "default", "x");
        PoolKey {
            src_ip: dst.ip(),
            src_identity: id.clone(),
            dst_identity: id,
            dst,
        }
    }

    fn algorithm(stream: &TcpStream) -> String {
        Congestion::of(&SockRef::from(stream)).expect("TCP_CONGESTION")
    }

    #[tokio::test]
    async fn upstream_sockets_get_the_tunnel_congestion_control() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dst = listener.local_addr().expect("addr");
        let default = {
            let plain = TcpStream::connect(dst).await.expect("plain connect");
            algorithm(&plain)
        };
        // reno is in every kernel and never this machine's default (cubic or bbr), so it shows
        // that the connector set it.
        assert_ne!(default, "reno");
        let reno = connector("reno").connect(&key(dst)).await.expect("connect");
        assert_eq!(algorithm(&reno), "reno");
        let kernel = connector("kernel")
            .connect(&key(dst))
            .await
            .expect("connect");
        assert_eq!(algorithm(&kernel), default);
    }
}
