//! Reading what we need from X.509 certificates (x509-parser): the SPIFFE id, validity, issuer.

use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use crate::{Error, SpiffeId};

/// What the rest of the crate needs from one certificate.
#[derive(Debug)]
pub(crate) struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Subject equals issuer (a root candidate).
    pub self_issued: bool,
}

/// Parses `der`; `what` names it in errors.
fn parse<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, Error> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| Error::X509 {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(Error::X509 {
            what,
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Validity and issuer facts of `der`.
pub(crate) fn info(der: &[u8], what: &'static str) -> Result<CertInfo, Error> {
    let cert = parse(der, what)?;
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: to_system_time(validity.not_before),
        not_after: to_system_time(validity.not_after),
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
    })
}

/// The single SPIFFE id in the URI SANs of `der`.
pub(crate) fn spiffe_id(der: &[u8], what: &'static str) -> Result<SpiffeId, Error> {
    let cert = parse(der, what)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::X509 {
            what,
            reason: format!("bad subjectAltName extension: {e}"),
        })?
        .ok_or(Error::NoSpiffeSan { what })?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(Error::NoSpiffeSan { what }),
        [uri] => uri.parse(),
        more => Err(Error::MultipleSpiffeSans {
            what,
            count: more.len(),
        }),
    }
}

/// Seconds since the epoch as a `SystemTime` (dates before 1970 included).
fn to_system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}
