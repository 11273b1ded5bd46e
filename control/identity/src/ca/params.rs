//! The contents of the certificates and CSRs we create (Istio-compatible profiles).

use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::{Error, SpiffeId, tls};

/// Validity of a generated root (DESIGN.md 4.2: 10 years, like Istio's self-signed root).
pub(crate) const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Certificates start this long before "now" so peers with slightly late clocks accept them.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A fresh ECDSA P-256 key (the only key type we generate, as Istio does).
pub(crate) fn new_key(what: &'static str) -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| Error::Generate { what, source })
}

/// A random positive 128-bit serial from the TLS provider's RNG.
fn serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte, so always 16 bytes
    Ok(SerialNumber::from_slice(&bytes))
}

/// The URI SAN carrying `id`.
pub(crate) fn uri_san(id: &SpiffeId) -> Result<SanType, Error> {
    let uri = Ia5String::try_from(id.to_string()).map_err(|source| Error::Generate {
        what: "the URI SAN",
        source,
    })?;
    Ok(SanType::URI(uri))
}

/// A self-signed root CA for `trust_domain`: subject O=<trust domain>, 10 years.
pub(crate) fn root(trust_domain: &str, now: SystemTime) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = OffsetDateTime::from(now - CLOCK_SKEW);
    p.not_after = OffsetDateTime::from(now + ROOT_LIFETIME);
    p.serial_number = Some(serial()?);
    Ok(p)
}

/// An intermediate CA below the signing CA: subject O=<trust domain>, CN=<common name>, no
/// further CAs below it (path length 0).
pub(crate) fn intermediate(
    trust_domain: &str,
    common_name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, Error> {
    if not_after <= not_before {
        return Err(Error::Validity("not_after must be later than not_before"));
    }
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, trust_domain);
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = OffsetDateTime::from(not_before);
    p.not_after = OffsetDateTime::from(not_after);
    p.serial_number = Some(serial()?);
    Ok(p)
}

/// A workload leaf like Istio's: empty subject, critical URI SAN, digitalSignature+keyEncipherment,
/// serverAuth+clientAuth, CA:false, authority key id.
pub(crate) fn leaf(
    id: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, Error> {
    if not_after <= not_before {
        return Err(Error::Validity("not_after must be later than not_before"));
    }
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![uri_san(id)?];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = OffsetDateTime::from(not_before);
    p.not_after = OffsetDateTime::from(not_after);
    p.serial_number = Some(serial()?);
    Ok(p)
}

/// CSR parameters: empty subject and the URI SAN of `id`, nothing else.
pub(crate) fn csr(id: &SpiffeId) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.subject_alt_names = vec![uri_san(id)?];
    Ok(p)
}
