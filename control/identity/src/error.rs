//! The errors of this crate: each says what failed, on what, and what an operator should check.

use crate::SpiffeId;

/// Everything that can go wrong with identities, certificates and TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string or set of parts is not a valid SPIFFE workload id.
    #[error(
        "invalid SPIFFE id {input:?}: {reason} (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)"
    )]
    InvalidSpiffeId {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A trust domain name is not valid.
    #[error(
        "invalid trust domain {0:?}: only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    InvalidTrustDomain(String),
    /// PEM text could not be decoded.
    #[error(
        "cannot read the PEM of {what}: {reason}; check it is PEM text with -----BEGIN ...----- blocks"
    )]
    Pem {
        /// Which input (e.g. "trust bundle").
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// PEM text held no certificate.
    #[error("no certificate in the PEM of {what}: expected -----BEGIN CERTIFICATE----- blocks")]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// PEM text held no private key.
    #[error(
        "no private key in the PEM of {what}: expected a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block"
    )]
    NoPrivateKey {
        /// Which input.
        what: &'static str,
    },
    /// A private key is malformed or of a kind we cannot use.
    #[error("cannot use the private key of {what}: {reason}")]
    Key {
        /// Which input.
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// A private key does not belong to the certificate it came with.
    #[error(
        "the private key does not match the certificate of {what}: check the key and certificate files belong together"
    )]
    KeyMismatch {
        /// Which input.
        what: &'static str,
    },
    /// A DER certificate could not be parsed.
    #[error("cannot parse the X.509 certificate of {what}: {reason}")]
    X509 {
        /// Which certificate.
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// A certificate carries no `spiffe://` URI SAN.
    #[error(
        "the certificate of {what} has no SPIFFE URI SAN (spiffe://<td>/ns/<ns>/sa/<sa>): is it a mesh workload certificate?"
    )]
    NoSpiffeSan {
        /// Which certificate.
        what: &'static str,
    },
    /// A certificate carries more than one `spiffe://` URI SAN.
    #[error(
        "the certificate of {what} has {count} SPIFFE URI SANs; a workload certificate carries exactly one"
    )]
    MultipleSpiffeSans {
        /// Which certificate.
        what: &'static str,
        /// How many it has.
        count: usize,
    },
    /// rcgen could not build or sign a key, certificate or CSR.
    #[error("cannot create {what}: {source}")]
    Generate {
        /// What was being created.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The CA was asked for an identity of another trust domain.
    #[error(
        "the CA of trust domain {ca_trust_domain} does not sign identities of other trust domains ({id})"
    )]
    ForeignTrustDomain {
        /// The CA's trust domain.
        ca_trust_domain: String,
        /// The identity that was asked for.
        id: SpiffeId,
    },
    /// A CSR is malformed or its signature does not verify.
    #[error("invalid CSR: {source}; check it is a PEM PKCS#10 request signed by its own key")]
    Csr {
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A CSR asks for another identity than the caller may have.
    #[error(
        "the CSR asks for the identities {found:?}, but the caller may only request {expected}"
    )]
    CsrIdentity {
        /// The identity the caller is allowed.
        expected: SpiffeId,
        /// The SANs in the CSR.
        found: Vec<String>,
    },
    /// The crypto provider's random generator failed.
    #[error("the crypto provider could not produce random bytes: check the system entropy source")]
    Random,
    /// A certificate lifetime is unusable.
    #[error("invalid certificate validity: {0}")]
    Validity(&'static str),
    /// A CA certificate chain does not end in a self-signed root.
    #[error(
        "the CA certificate chain does not end in a self-signed root: give the CA certificate followed by its chain up to the root, or the roots separately"
    )]
    NoRoot,
    /// The CA certificate and key do not produce certificates the trust bundle accepts.
    #[error(
        "certificates signed by this CA do not verify against its trust bundle ({source}): check the CA certificate, key, chain and root belong together and are valid now"
    )]
    CaChain {
        /// The verification error.
        source: rustls::Error,
    },
    /// A trust bundle certificate cannot serve as a trust anchor.
    #[error("certificate #{index} of the trust bundle cannot be used as a root: {source}")]
    BundleRoot {
        /// Position in the bundle (0-based).
        index: usize,
        /// The reason.
        source: rustls::Error,
    },
    /// rustls refused a TLS configuration.
    #[error("cannot build the TLS {side} config for {id}: {source}")]
    TlsConfig {
        /// "server" or "client".
        side: &'static str,
        /// The identity of the certificate (boxed to keep `Error` small).
        id: Box<SpiffeId>,
        /// rustls' error.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The peer sent no certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The server is a valid mesh workload but not one this connection was meant for.
    #[error(
        "the server identity {found} is not one expected for this destination (expected {expected})"
    )]
    UnexpectedServer {
        /// The identity the server presented.
        found: SpiffeId,
        /// A description of what was expected.
        expected: String,
    },
    /// The peer belongs to another trust domain.
    #[error("the peer identity {found} is outside the trust domain {trust_domain}")]
    ForeignPeer {
        /// The identity the peer presented.
        found: SpiffeId,
        /// The trust domain required.
        trust_domain: String,
    },
}
