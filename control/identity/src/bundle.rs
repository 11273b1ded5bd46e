//! The mesh trust bundle: the root certificate(s) every peer's chain must lead to.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

use crate::{Error, encoding};

/// The mesh root certificate(s). Cheap to clone.
#[derive(Clone)]
pub struct TrustBundle {
    roots: Arc<[CertificateDer<'static>]>,
    store: Arc<RootCertStore>,
}

impl TrustBundle {
    /// Every certificate in `pem` becomes a root. At least one is required.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::from_der(encoding::certs_from_pem(pem, "trust bundle")?)
    }

    /// A bundle of the given DER roots (at least one).
    pub fn from_der(roots: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        if roots.is_empty() {
            return Err(Error::NoCertificate {
                what: "trust bundle",
            });
        }
        let mut store = RootCertStore::empty();
        for (index, root) in roots.iter().enumerate() {
            store
                .add(root.clone())
                .map_err(|source| Error::BundleRoot { index, source })?;
        }
        Ok(Self {
            roots: roots.into(),
            store: Arc::new(store),
        })
    }

    /// The roots as consecutive PEM `CERTIFICATE` blocks.
    pub fn to_pem(&self) -> String {
        encoding::certs_to_pem(&self.roots)
    }

    /// The roots, DER encoded.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// True if `cert` is one of the roots.
    pub fn contains(&self, cert: &CertificateDer<'_>) -> bool {
        self.roots.iter().any(|r| r.as_ref() == cert.as_ref())
    }

    /// The roots as trust anchors for rustls/webpki.
    pub(crate) fn root_store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }
}

impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.roots == other.roots
    }
}

impl Eq for TrustBundle {}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.roots.len())
            .finish()
    }
}
