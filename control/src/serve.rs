//! control's gRPC endpoint (port 15012): TLS 1.3 with a certificate for control's own SPIFFE identity from the
//! mesh CA, serving the config stream and the certificate service.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mesh_identity::{CertificateAuthority, SpiffeId};
use mesh_xds::pb::certificates_server::CertificatesServer;
use mesh_xds::pb::config_discovery_server::ConfigDiscoveryServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::ca::CaService;
use crate::xds::ConfigService;

/// Lifetime of control's own serving certificate (re-issued at every start).
pub const SERVING_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The port could not be bound.
    #[error("cannot listen on {0}: {1}; is another control running?")]
    Bind(SocketAddr, std::io::Error),
    /// The serving certificate could not be made.
    #[error("serving certificate for {0}: {1}")]
    Cert(SpiffeId, String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A TLS connection tonic can serve.
pub struct TlsIo(TlsStream<TcpStream>);

impl Connected for TlsIo {
    type ConnectInfo = Option<SocketAddr>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The rustls server config of control: its own certificate, no client certificate (callers send tokens).
pub fn server_tls(
    ca: &CertificateAuthority,
    id: &SpiffeId,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let err = |e: String| ServeError::Cert(id.clone(), e);
    let cert = ca
        .issue(id, SERVING_CERT_LIFETIME)
        .map_err(|e| err(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(mesh_identity::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(cert.chain().to_vec(), cert.private_key())
        .map_err(|e| err(e.to_string()))?;
    config.alpn_protocols = vec![mesh_identity::tls::ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Binds `addr` (returns the bound address, for port 0).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind(addr, e))?;
    let local = l.local_addr().map_err(|e| ServeError::Bind(addr, e))?;
    Ok((l, local))
}

/// Serves the config stream and CA on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    config: ConfigService,
    ca: CaService,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let (tx, rx) = mpsc::channel::<Result<TlsIo, std::io::Error>>(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accept_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = accept_stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsIo(tls))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake with control failed")
                    }
                    Err(_) => tracing::info!(%peer, "TLS handshake with control timed out"),
                }
            });
        }
    });
    let incoming =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(ConfigDiscoveryServer::new(config))
        .add_service(CertificatesServer::new(ca))
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await?;
    Ok(())
}
