//! A gRPC channel to control over TLS 1.3: the server must chain to the mesh root and prove control's SPIFFE
//! identity (the address is not checked, so control can be reached by IP).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use mesh_identity::tls::{self, ServerIdentity};
use mesh_identity::{SpiffeId, TrustBundle};
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

/// How long connecting to control may take before the attempt fails (then the caller retries).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors setting up the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The TLS config could not be built.
    #[error("TLS config for control: {0}")]
    Tls(rustls::Error),
    /// The endpoint is invalid.
    #[error("control endpoint {0}: {1}")]
    Endpoint(SocketAddr, tonic::transport::Error),
}

/// Where control is and how to recognise it.
#[derive(Debug, Clone)]
pub struct ControlTarget {
    /// Address of control's gRPC port.
    pub addr: SocketAddr,
    /// Roots control's certificate must chain to.
    pub roots: TrustBundle,
    /// Identity control must prove.
    pub identity: SpiffeId,
}

/// A rustls client config for `target` (no client certificate: callers authenticate with their token).
pub fn client_config(target: &ControlTarget) -> Result<Arc<rustls::ClientConfig>, ChannelError> {
    let verifier = tls::server_cert_verifier(
        &target.roots,
        &target.identity.trust_domain,
        ServerIdentity::OneOf(vec![target.identity.clone()]),
    );
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(ChannelError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A lazily connecting channel to `target` (it reconnects by itself after failures).
pub fn channel(target: &ControlTarget) -> Result<Channel, ChannelError> {
    let config = client_config(target)?;
    let addr = target.addr;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| ChannelError::Endpoint(addr, e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let connector = tower::service_fn(move |_uri: http_uri::Uri| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// The `http::Uri` type tonic's connector receives.
mod http_uri {
    pub use tonic::codegen::http::Uri;
}
