//! The mesh certificate authority: signs workload leaves (directly, or from CSRs for the CA service).

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateSigningRequestParams, Issuer, KeyPair, SanType};
use rustls::server::ParsedCertificate;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, UnixTime};

use crate::{Error, SpiffeId, TrustBundle, WorkloadCert, encoding, spiffe, tls, x509};

mod params;

/// Signs ECDSA P-256 workload certificates for one trust domain, as a root or an intermediate CA.
pub struct CertificateAuthority {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The CA certificate itself.
    cert: CertificateDer<'static>,
    /// Certificates between the CA certificate and the roots (excluded from both ends).
    intermediates: Vec<CertificateDer<'static>>,
    /// True if the CA certificate is itself one of the roots.
    is_root: bool,
    bundle: TrustBundle,
    not_after: SystemTime,
}

impl CertificateAuthority {
    /// A new self-signed ECDSA P-256 root for `trust_domain`, valid for 10 years.
    pub fn generate(trust_domain: &str) -> Result<Self, Error> {
        check_trust_domain(trust_domain)?;
        let key = params::new_key("the CA key")?;
        let root = params::root(trust_domain, SystemTime::now())?;
        let cert = root.self_signed(&key).map_err(|source| Error::Generate {
            what: "the CA root certificate",
            source,
        })?;
        let pem = cert.pem();
        Self::from_pem(pem.as_bytes(), key.serialize_pem().as_bytes(), trust_domain)
    }

    /// Loads a CA from its certificate and key (PKCS#8, SEC1 or PKCS#1 PEM).
    ///
    /// `cert_pem` holds the CA certificate first, then any intermediates, then the root(s). Every
    /// self-issued certificate in it becomes a root of the trust bundle; a self-signed CA certificate
    /// alone is a root CA. Use [`CertificateAuthority::from_pem_with_roots`] when the roots come
    /// separately (Istio `cacerts`: `cert-chain.pem` + `root-cert.pem`).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], trust_domain: &str) -> Result<Self, Error> {
        let certs = encoding::certs_from_pem(cert_pem, "CA certificate")?;
        let mut roots = Vec::new();
        for cert in &certs {
            if x509::info(cert, "CA certificate chain")?.self_issued {
                roots.push(cert.clone());
            }
        }
        if roots.is_empty() {
            return Err(Error::NoRoot);
        }
        let key = encoding::key_from_pem(key_pem, "CA private key")?;
        Self::assemble(certs, key, TrustBundle::from_der(roots)?, trust_domain)
    }

    /// Loads a CA whose roots are given apart from its chain: `cert_chain_pem` is the CA certificate
    /// then its intermediates, `roots_pem` the trust bundle.
    pub fn from_pem_with_roots(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        roots_pem: &[u8],
        trust_domain: &str,
    ) -> Result<Self, Error> {
        let certs = encoding::certs_from_pem(cert_chain_pem, "CA certificate chain")?;
        let key = encoding::key_from_pem(key_pem, "CA private key")?;
        Self::assemble(certs, key, TrustBundle::from_pem(roots_pem)?, trust_domain)
    }

    fn assemble(
        certs: Vec<CertificateDer<'static>>,
        key: PrivatePkcs8KeyDer<'static>,
        bundle: TrustBundle,
        trust_domain: &str,
    ) -> Result<Self, Error> {
        check_trust_domain(trust_domain)?;
        let cert = certs[0].clone();
        let key_pair = KeyPair::try_from(&key).map_err(|e| Error::Key {
            what: "CA private key",
            reason: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_der(&cert, key_pair).map_err(|source| Error::Generate {
                what: "the CA issuer from its certificate",
                source,
            })?;
        let ca = Self {
            trust_domain: trust_domain.to_string(),
            issuer,
            key,
            is_root: bundle.contains(&cert),
            intermediates: certs[1..]
                .iter()
                .filter(|c| !bundle.contains(c))
                .cloned()
                .collect(),
            not_after: x509::info(&cert, "CA certificate")?.not_after,
            cert,
            bundle,
        };
        ca.self_check()?;
        Ok(ca)
    }

    /// Issues a probe leaf and verifies it against the bundle, so a mismatched key, chain or root
    /// fails at load time with a clear message rather than in every handshake.
    fn self_check(&self) -> Result<(), Error> {
        let probe = SpiffeId::new(&self.trust_domain, "mesh-identity", "ca-self-check");
        let now = SystemTime::now();
        let cert =
            self.issue_with_validity(&probe, now - params::CLOCK_SKEW, now + params::CLOCK_SKEW)?;
        let leaf =
            ParsedCertificate::try_from(cert.leaf()).map_err(|source| Error::CaChain { source })?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &self.bundle.root_store(),
            &cert.chain()[1..],
            UnixTime::now(),
            tls::provider().signature_verification_algorithms.all,
        )
        .map_err(|source| Error::CaChain { source })
    }

    /// Issues a certificate for `id`, valid from now (minus a minute of clock skew) for `lifetime`,
    /// capped at the CA certificate's own expiry. The chain holds the leaf and any intermediates.
    pub fn issue(&self, id: &SpiffeId, lifetime: Duration) -> Result<WorkloadCert, Error> {
        if lifetime.is_zero() {
            return Err(Error::Validity("the certificate lifetime is zero"));
        }
        let now = SystemTime::now();
        self.issue_with_validity(id, now - params::CLOCK_SKEW, now + lifetime)
    }

    /// Issues a certificate for `id` with an explicit validity window (capped at the CA's expiry).
    /// Meant for tests and tools that need certificates not yet valid or already expired.
    pub fn issue_with_validity(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<WorkloadCert, Error> {
        self.check_id(id)?;
        let key = params::new_key("the workload key")?;
        let leaf = params::leaf(id, not_before, not_after.min(self.not_after))?;
        let cert = leaf
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "the workload certificate",
                source,
            })?;
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        WorkloadCert::from_parts(self.chain_with(cert.der().clone()), key)
    }

    /// Signs a PEM CSR for `expected` (the identity the caller was authenticated for). The CSR must
    /// ask for exactly that URI SAN; everything else in the certificate is the CA's choice.
    /// Returns the chain PEM: leaf first, then intermediates.
    pub fn sign_csr(
        &self,
        csr_pem: &[u8],
        expected: &SpiffeId,
        lifetime: Duration,
    ) -> Result<String, Error> {
        self.check_id(expected)?;
        if lifetime.is_zero() {
            return Err(Error::Validity("the certificate lifetime is zero"));
        }
        let pem = std::str::from_utf8(csr_pem).map_err(|e| Error::Pem {
            what: "CSR",
            reason: e.to_string(),
        })?;
        let csr = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|source| Error::Csr { source })?;
        let found: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(uri) => uri.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if found != [expected.to_string()] {
            return Err(Error::CsrIdentity {
                expected: expected.clone(),
                found,
            });
        }
        let now = SystemTime::now();
        let leaf = params::leaf(
            expected,
            now - params::CLOCK_SKEW,
            (now + lifetime).min(self.not_after),
        )?;
        let cert = leaf
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "the workload certificate from the CSR",
                source,
            })?;
        Ok(encoding::certs_to_pem(&self.chain_with(cert.der().clone())))
    }

    /// A new intermediate CA (ECDSA P-256, path length 0) signed by this one, valid for `lifetime`
    /// (capped at this CA's expiry), sharing this CA's trust bundle. `common_name` names it in
    /// its subject (e.g. the cluster it serves).
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        lifetime: Duration,
    ) -> Result<CertificateAuthority, Error> {
        if lifetime.is_zero() {
            return Err(Error::Validity("the certificate lifetime is zero"));
        }
        let now = SystemTime::now();
        let key = params::new_key("the intermediate CA key")?;
        let params = params::intermediate(
            &self.trust_domain,
            common_name,
            now - params::CLOCK_SKEW,
            (now + lifetime).min(self.not_after),
        )?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| Error::Generate {
                what: "the intermediate CA certificate",
                source,
            })?;
        let certs = self.chain_with(cert.der().clone());
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        Self::assemble(certs, key, self.bundle.clone(), &self.trust_domain)
    }

    /// The roots that every certificate of this CA chains to.
    pub fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// The CA certificate, then its intermediates, then the roots: what [`Self::from_pem`] reads.
    pub fn cert_pem(&self) -> String {
        let mut certs = vec![self.cert.clone()];
        certs.extend(self.intermediates.iter().cloned());
        certs.extend(
            self.bundle
                .roots()
                .iter()
                .filter(|r| r.as_ref() != self.cert.as_ref())
                .cloned(),
        );
        encoding::certs_to_pem(&certs)
    }

    /// The CA private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        encoding::key_to_pem(&self.key)
    }

    /// The trust domain this CA signs for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// End of the CA certificate's validity; no leaf outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    fn check_id(&self, id: &SpiffeId) -> Result<(), Error> {
        id.validate()?;
        if !id.in_trust_domain(&self.trust_domain) {
            return Err(Error::ForeignTrustDomain {
                ca_trust_domain: self.trust_domain.clone(),
                id: id.clone(),
            });
        }
        Ok(())
    }

    /// `leaf` followed by the certificates a peer needs to reach a root.
    fn chain_with(&self, leaf: CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![leaf];
        if !self.is_root {
            chain.push(self.cert.clone());
            chain.extend(self.intermediates.iter().cloned());
        }
        chain
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("is_root", &self.is_root)
            .field("intermediates", &self.intermediates.len())
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A new ECDSA P-256 key and a CSR for `id` signed by it: (CSR PEM, PKCS#8 key PEM).
pub fn new_csr(id: &SpiffeId) -> Result<(String, String), Error> {
    id.validate()?;
    let key = params::new_key("the workload key")?;
    let generate = |source| Error::Generate {
        what: "the CSR",
        source,
    };
    let csr = params::csr(id)?
        .serialize_request(&key)
        .map_err(generate)?
        .pem()
        .map_err(generate)?;
    Ok((csr, key.serialize_pem()))
}

fn check_trust_domain(trust_domain: &str) -> Result<(), Error> {
    spiffe::check_trust_domain(trust_domain)
        .map_err(|_| Error::InvalidTrustDomain(trust_domain.to_string()))
}

#[cfg(test)]
mod tests;
