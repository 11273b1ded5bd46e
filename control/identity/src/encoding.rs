//! PEM decoding and encoding of certificates and private keys.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Error, keys};

/// Every certificate in `pem`, in order; at least one.
pub(crate) fn certs_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate { what });
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, SEC1 or PKCS#1), converted to PKCS#8.
pub(crate) fn key_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<PrivatePkcs8KeyDer<'static>, Error> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::NoPrivateKey { what },
        other => Error::Pem {
            what,
            reason: other.to_string(),
        },
    })?;
    keys::to_pkcs8(&key).map_err(|reason| Error::Key { what, reason })
}

/// `ders` as consecutive PEM blocks with the given tag (e.g. `CERTIFICATE`).
pub(crate) fn to_pem<'a>(tag: &str, ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    ders.into_iter()
        .map(|der| pem::encode_config(&pem::Pem::new(tag, der), config))
        .collect()
}

/// Certificates as PEM.
pub(crate) fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    to_pem("CERTIFICATE", certs.iter().map(|c| c.as_ref()))
}

/// A PKCS#8 private key as PEM.
pub(crate) fn key_to_pem(key: &PrivatePkcs8KeyDer<'_>) -> String {
    to_pem("PRIVATE KEY", [key.secret_pkcs8_der()])
}
