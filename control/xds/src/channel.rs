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

/// Errors turning a proxy's `--control`, `--control-ca` and `--control-identity` flags into a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// `--control-ca` was not given.
    #[error("--control needs --control-ca")]
    NoRoots,
    /// The roots file could not be read.
    #[error("cannot read --control-ca {0}: {1}")]
    ReadRoots(std::path::PathBuf, std::io::Error),
    /// The roots file holds no valid certificate.
    #[error("invalid --control-ca {0}: {1}")]
    InvalidRoots(std::path::PathBuf, String),
    /// `--control-identity` is not a SPIFFE id.
    #[error("invalid --control-identity {0:?}: {1}")]
    InvalidIdentity(String, String),
    /// `--control` did not resolve to an address.
    #[error("--control {0}: cannot resolve (expected host:port)")]
    Resolve(String),
}

impl ControlTarget {
    /// The target a proxy's flags name: control at `control` (`host:port`, resolved now), proving
    /// `identity` with a certificate that chains to the roots in the `roots` file.
    pub async fn from_flags(
        control: &str,
        roots: Option<&std::path::Path>,
        identity: &str,
    ) -> Result<Self, TargetError> {
        let roots_file = roots.ok_or(TargetError::NoRoots)?;
        let pem = std::fs::read(roots_file)
            .map_err(|e| TargetError::ReadRoots(roots_file.to_path_buf(), e))?;
        let roots = TrustBundle::from_pem(&pem)
            .map_err(|e| TargetError::InvalidRoots(roots_file.to_path_buf(), e.to_string()))?;
        let identity: SpiffeId = identity
            .parse()
            .map_err(|e| TargetError::InvalidIdentity(identity.to_owned(), format!("{e}")))?;
        let addr = tokio::net::lookup_host(control)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| TargetError::Resolve(control.to_owned()))?;
        Ok(Self {
            addr,
            roots,
            identity,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_identity::CertificateAuthority;

    const CONTROL: &str = "spiffe://cluster.local/ns/istio-system/sa/mesh-control";

    #[tokio::test]
    async fn flags_make_a_target_or_say_which_flag_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let roots = dir.path().join("root.pem");
        let ca = CertificateAuthority::generate("cluster.local").unwrap();
        std::fs::write(&roots, ca.cert_pem()).unwrap();

        let t = ControlTarget::from_flags("127.0.0.1:15012", Some(&roots), CONTROL)
            .await
            .unwrap();
        assert_eq!(t.addr, "127.0.0.1:15012".parse().unwrap());
        assert_eq!(t.identity.to_string(), CONTROL);

        let err = |r: Result<ControlTarget, TargetError>| r.unwrap_err();
        assert!(matches!(
            err(ControlTarget::from_flags("127.0.0.1:1", None, CONTROL).await),
            TargetError::NoRoots
        ));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            err(ControlTarget::from_flags("127.0.0.1:1", Some(&missing), CONTROL).await),
            TargetError::ReadRoots(..)
        ));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        assert!(matches!(
            err(ControlTarget::from_flags("127.0.0.1:1", Some(&garbage), CONTROL).await),
            TargetError::InvalidRoots(..)
        ));
        assert!(matches!(
            err(ControlTarget::from_flags("127.0.0.1:1", Some(&roots), "control").await),
            TargetError::InvalidIdentity(..)
        ));
        assert!(matches!(
            err(ControlTarget::from_flags("no port", Some(&roots), CONTROL).await),
            TargetError::Resolve(..)
        ));
    }
}
