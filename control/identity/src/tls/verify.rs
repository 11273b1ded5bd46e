//! Certificate verifiers of HBONE mTLS: chain to the mesh roots, then the SPIFFE identity.
//!
//! Failures map to the TLS alerts Istio's ztunnel sends (DESIGN.md 4.1): unknown issuer ->
//! unknown_ca, expired -> certificate_expired (both from webpki via rustls), and identity problems
//! (no URI SAN, other trust domain, unexpected server) -> `CertificateError::Other` ->
//! certificate_unknown.
//!
//! A foreign CA often has the same subject as ours (every Istio-style root is `O=cluster.local`).
//! webpki matches issuers by name only, so such a chain fails on its signature (decrypt_error)
//! instead of on the issuer. OpenSSL/BoringSSL peers also match the authority key id and report
//! unknown_ca; we do the same by reporting a chain signature failure as an unknown issuer. The
//! handshake signature (CertificateVerify) is checked elsewhere and keeps decrypt_error.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use super::ServerIdentity;
use crate::{Error, SpiffeId, TrustBundle, x509};

/// Wraps an identity failure so rustls sends certificate_unknown and keeps our message.
pub(crate) fn identity_failure(err: Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

/// A chain whose signatures do not verify against any root with the issuer's name was issued by
/// a CA we do not know: report it as such (unknown_ca).
fn chain_failure(err: rustls::Error) -> rustls::Error {
    #[allow(deprecated)] // `BadSignature` is still what webpki's errors map to in rustls 0.23
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
        ) => rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        other => other,
    }
}

/// The SPIFFE id of a peer's leaf, as a rustls error on failure.
fn peer_id(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, rustls::Error> {
    x509::spiffe_id(end_entity, "peer certificate").map_err(identity_failure)
}

/// Server side: requires a client certificate chaining to the mesh roots, with a SPIFFE id in the
/// server's own trust domain.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl ClientVerifier {
    pub(crate) fn new(
        bundle: &TrustBundle,
        trust_domain: String,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let inner =
            WebPkiClientVerifier::builder_with_provider(bundle.root_store(), provider).build()?;
        Ok(Self {
            inner,
            trust_domain,
        })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(chain_failure)?;
        let id = peer_id(end_entity)?;
        if !id.in_trust_domain(&self.trust_domain) {
            return Err(identity_failure(Error::ForeignPeer {
                found: id,
                trust_domain: self.trust_domain.clone(),
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client side: the server's chain must lead to the mesh roots and its SPIFFE id must be one the
/// client expects. The TLS server name (an IP) is ignored: identity is what matters.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    /// The client's own trust domain, for [`ServerIdentity::AnyInTrustDomain`].
    trust_domain: String,
    expected: ServerIdentity,
}

impl ServerVerifier {
    pub(crate) fn new(
        bundle: &TrustBundle,
        trust_domain: String,
        expected: ServerIdentity,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            roots: bundle.root_store(),
            provider,
            trust_domain,
            expected,
        }
    }

    fn check_identity(&self, id: SpiffeId) -> Result<(), Error> {
        match &self.expected {
            ServerIdentity::AnyInTrustDomain if id.in_trust_domain(&self.trust_domain) => Ok(()),
            ServerIdentity::AnyInTrustDomain => Err(Error::ForeignPeer {
                found: id,
                trust_domain: self.trust_domain.clone(),
            }),
            ServerIdentity::OneOf(ids) if ids.contains(&id) => Ok(()),
            ServerIdentity::OneOf(_) => Err(Error::UnexpectedServer {
                found: id,
                expected: self.expected.to_string(),
            }),
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(chain_failure)?;
        self.check_identity(peer_id(end_entity)?)
            .map_err(identity_failure)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
