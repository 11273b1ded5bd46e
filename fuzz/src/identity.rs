//! `ca_csr`: a certificate signing request as a workload sends it to control's CA (after its
//! token was checked, so the identity it may ask for is known). The CA must refuse anything but
//! a CSR for exactly that identity, and what it signs must name exactly that identity and must not
//! be a CA itself.

use std::sync::OnceLock;
use std::time::Duration;

use mesh_identity::{CertificateAuthority, SpiffeId};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The identity the caller was authenticated for.
fn expected() -> SpiffeId {
    SpiffeId::new("cluster.local", "fuzz", "workload")
}

/// One CA for every input (generating a key per input would be most of the work).
fn ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(|| {
        CertificateAuthority::generate("cluster.local").expect("a CA key and root can be generated")
    })
}

/// Asks the CA to sign `data` as a PEM CSR and checks what it signs.
pub fn ca_csr(data: &[u8]) {
    ca_signs(data);
}

/// [`ca_csr`], returning whether the CA signed.
pub fn ca_signs(data: &[u8]) -> bool {
    let Ok(chain) = ca().sign_csr(data, &expected(), Duration::from_secs(3600)) else {
        return false;
    };
    let leaf = Pem::iter_from_buffer(chain.as_bytes())
        .next()
        .expect("a signed chain has a leaf")
        .expect("the CA writes valid PEM");
    let cert = leaf
        .parse_x509()
        .expect("the CA writes a valid certificate");
    let uris: Vec<String> = cert
        .subject_alternative_name()
        .expect("one SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::URI(u) => (*u).to_owned(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        uris,
        [expected().to_string()],
        "the CA signed a certificate for another identity"
    );
    assert!(
        !cert.is_ca(),
        "the CA signed a CA certificate for a workload"
    );
    true
}

/// A CSR for the expected identity, as a workload makes it (the seed of the corpus).
pub fn csr_seed() -> Vec<u8> {
    mesh_identity::new_csr(&expected())
        .map(|(csr, _key)| csr.into_bytes())
        .unwrap_or_default()
}
