//! A workload certificate: leaf + chain + private key for one SPIFFE identity.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Error, SpiffeId, encoding, tls, x509};

/// Leaf certificate (first), its intermediates, and the private key of one workload identity.
///
/// Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct WorkloadCert {
    id: SpiffeId,
    chain: Arc<[CertificateDer<'static>]>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl WorkloadCert {
    /// Loads a chain (leaf first, then intermediates) and its private key (PKCS#8, SEC1 or PKCS#1).
    /// The identity is the leaf's SPIFFE URI SAN; the key must match the leaf.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = encoding::certs_from_pem(chain_pem, "workload certificate chain")?;
        let key = encoding::key_from_pem(key_pem, "workload private key")?;
        check_key_matches(&chain[0], &key, "workload certificate")?;
        Self::from_parts(chain, key)
    }

    /// Assembles a certificate whose key is known to match (we generated both).
    pub(crate) fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, Error> {
        let leaf = chain.first().ok_or(Error::NoCertificate {
            what: "workload certificate chain",
        })?;
        let id = x509::spiffe_id(leaf, "workload certificate")?;
        let info = x509::info(leaf, "workload certificate")?;
        Ok(Self {
            id,
            chain: chain.into(),
            key: Arc::new(key),
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// The identity this certificate proves.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Half-way through the validity: when to ask for a new certificate (DESIGN.md 4.2).
    pub fn renewal_time(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + lifetime / 2
    }

    /// True if `at` lies within the leaf's validity.
    pub fn is_valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// Leaf first, then intermediates (never the root).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// A copy of the private key, for building TLS configs.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        encoding::certs_to_pem(&self.chain)
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        encoding::key_to_pem(&self.key)
    }
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("id", &self.id.to_string())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Signs a probe with `key` (through the TLS crypto provider) and verifies it with `cert`'s public key.
/// Works with every provider, including ones that cannot derive a public key from a private key.
pub(crate) fn check_key_matches(
    cert: &CertificateDer<'_>,
    key: &PrivatePkcs8KeyDer<'_>,
    what: &'static str,
) -> Result<(), Error> {
    const PROBE: &[u8] = b"mesh-identity: does this key belong to this certificate?";
    let provider = tls::provider();
    let key_error = |reason: String| Error::Key { what, reason };
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
        .map_err(|e| key_error(e.to_string()))?;
    let algs = provider.signature_verification_algorithms;
    let signer = signing_key
        .choose_scheme(&algs.supported_schemes())
        .ok_or_else(|| key_error("no signature scheme of the TLS provider fits this key".into()))?;
    let signature = signer.sign(PROBE).map_err(|e| key_error(e.to_string()))?;
    let verify_algs = algs
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == signer.scheme())
        .map(|(_, algs)| *algs)
        .unwrap_or_default();
    let end_entity = webpki::EndEntityCert::try_from(cert).map_err(|e| Error::X509 {
        what,
        reason: e.to_string(),
    })?;
    let matches = verify_algs
        .iter()
        .any(|alg| end_entity.verify_signature(*alg, PROBE, &signature).is_ok());
    if matches {
        Ok(())
    } else {
        Err(Error::KeyMismatch { what })
    }
}
