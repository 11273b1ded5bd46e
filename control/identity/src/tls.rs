//! rustls configurations for HBONE mTLS (DESIGN.md 4.1): TLS 1.3 only, AES-GCM suites, ALPN `h2`,
//! client certificates required, peers verified by chain and SPIFFE identity, session resumption on.
//!
//! Build one config per certificate (and per expected server identity) and reuse it: the session
//! caches live in the config, so a fresh config per connection gets no resumption.

use std::fmt;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::ServerSessionMemoryCache;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::CertificateDer;

use crate::{Error, SpiffeId, TrustBundle, WorkloadCert, x509};

mod provider;
mod verify;

pub use provider::{provider, provider_name};

/// The only application protocol HBONE speaks.
pub const ALPN_H2: &[u8] = b"h2";

/// Sessions a server remembers for resumption. Stateful (provider-independent) TLS 1.3 resumption
/// stores one entry per issued ticket, about 1-2 KB each with the client chain: 4096 entries cover
/// a busy node's peers for a few MB.
const SERVER_SESSION_CACHE: usize = 4096;

/// Server names (peer IPs) a client remembers tickets for; each keeps up to 8 tickets.
const CLIENT_SESSION_CACHE: usize = 1024;

/// Tickets a server sends after each handshake: one spare lets two connections opened together
/// both resume.
const TLS13_TICKETS: usize = 2;

/// Which server identities a client accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ServerIdentity {
    /// Any workload of the client's own trust domain.
    AnyInTrustDomain,
    /// Exactly one of these identities (e.g. the service accounts behind a destination).
    OneOf(Vec<SpiffeId>),
}

impl fmt::Display for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyInTrustDomain => f.write_str("any identity of the client's trust domain"),
            Self::OneOf(ids) => {
                f.write_str("one of [")?;
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{id}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Server config for `cert`: requires a client certificate chaining to `bundle` whose identity is
/// in `cert`'s trust domain; ALPN `h2`; TLS 1.3 session resumption with a per-config cache.
pub fn server_config(
    cert: &WorkloadCert,
    bundle: &TrustBundle,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = provider();
    let verifier =
        verify::ClientVerifier::new(bundle, cert.id().trust_domain.clone(), provider.clone())?;
    let tls_err = |source| Error::TlsConfig {
        side: "server",
        id: Box::new(cert.id().clone()),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(cert.chain().to_vec(), cert.private_key())
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SERVER_SESSION_CACHE);
    config.send_tls13_tickets = TLS13_TICKETS;
    Ok(Arc::new(config))
}

/// Client config presenting `cert`, accepting servers that chain to `bundle` and match `expected`.
/// The server name passed to rustls (usually the destination IP) is not checked and no SNI is sent
/// for IPs. ALPN `h2`; TLS 1.3 session resumption with a per-config cache.
pub fn client_config(
    cert: &WorkloadCert,
    bundle: &TrustBundle,
    expected: ServerIdentity,
) -> Result<Arc<ClientConfig>, Error> {
    let provider = provider();
    let verifier = verify::ServerVerifier::new(
        bundle,
        cert.id().trust_domain.clone(),
        expected,
        provider.clone(),
    );
    let tls_err = |source| Error::TlsConfig {
        side: "client",
        id: Box::new(cert.id().clone()),
        source,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(cert.chain().to_vec(), cert.private_key())
        .map_err(tls_err)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = Resumption::in_memory_sessions(CLIENT_SESSION_CACHE);
    Ok(Arc::new(config))
}

/// The verifier [`server_config`] uses: client chain to `bundle`, client identity in
/// `trust_domain`. For callers assembling their own rustls config.
pub fn client_cert_verifier(
    bundle: &TrustBundle,
    trust_domain: &str,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let verifier = verify::ClientVerifier::new(bundle, trust_domain.to_string(), provider())?;
    Ok(Arc::new(verifier))
}

/// The verifier [`client_config`] uses: server chain to `bundle`, server identity as `expected`
/// (`AnyInTrustDomain` meaning `trust_domain`). For callers assembling their own rustls config.
pub fn server_cert_verifier(
    bundle: &TrustBundle,
    trust_domain: &str,
    expected: ServerIdentity,
) -> Arc<dyn ServerCertVerifier> {
    Arc::new(verify::ServerVerifier::new(
        bundle,
        trust_domain.to_string(),
        expected,
        provider(),
    ))
}

/// The identity in the leaf (first) certificate a peer presented, e.g. from
/// `conn.peer_certificates()`. Also works on resumed sessions, which keep the peer's chain.
pub fn peer_identity(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, Error> {
    let leaf = certs.first().ok_or(Error::NoPeerCertificate)?;
    x509::spiffe_id(leaf, "peer certificate")
}

/// Our own error behind a rustls handshake error, if an identity check of this crate caused it
/// (no SPIFFE SAN, other trust domain, unexpected server). Use it to log a clear reason.
pub fn identity_error(err: &rustls::Error) -> Option<&Error> {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<Error>()
        }
        _ => None,
    }
}

/// A one-line description of a handshake error: our identity message when we caused it, rustls'
/// otherwise.
pub fn describe_error(err: &rustls::Error) -> String {
    match identity_error(err) {
        Some(ours) => format!("peer certificate rejected: {ours}"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests;
