//! Private key formats: everything is kept as PKCS#8, the one format every backend (rcgen's, aws-lc-rs,
//! BoringSSL) reads. SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) keys, as found in Istio
//! `cacerts` secrets, are wrapped into PKCS#8 with a few lines of DER.

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// `[0]` constructed, explicit: the SEC1 curve parameters.
const TAG_CONTEXT_0: u8 = 0xa0;

/// OID 1.2.840.113549.1.1.1 (rsaEncryption), DER content bytes.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID 1.2.840.10045.2.1 (id-ecPublicKey), DER content bytes.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// `key` as PKCS#8; the error says why a key cannot be converted.
pub(crate) fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<PrivatePkcs8KeyDer<'static>, String> {
    match key {
        PrivateKeyDer::Pkcs8(k) => Ok(PrivatePkcs8KeyDer::from(k.secret_pkcs8_der().to_vec())),
        PrivateKeyDer::Pkcs1(k) => {
            let alg = [tlv(TAG_OID, OID_RSA_ENCRYPTION), tlv(TAG_NULL, &[])].concat();
            Ok(wrap_pkcs8(&alg, k.secret_pkcs1_der()))
        }
        PrivateKeyDer::Sec1(k) => {
            let curve = sec1_curve_oid(k.secret_sec1_der()).ok_or_else(|| {
                "the EC PRIVATE KEY does not name its curve (no [0] parameters); convert it to PKCS#8 \
                 with `openssl pkcs8 -topk8 -nocrypt`"
                    .to_string()
            })?;
            let alg = [tlv(TAG_OID, OID_EC_PUBLIC_KEY), tlv(TAG_OID, curve)].concat();
            Ok(wrap_pkcs8(&alg, k.secret_sec1_der()))
        }
        _ => Err("unsupported private key format; use PKCS#8, SEC1 or PKCS#1".to_string()),
    }
}

/// PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }
fn wrap_pkcs8(alg_content: &[u8], inner: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    let body = [
        tlv(TAG_INTEGER, &[0]),
        tlv(TAG_SEQUENCE, alg_content),
        tlv(TAG_OCTET_STRING, inner),
    ]
    .concat();
    PrivatePkcs8KeyDer::from(tlv(TAG_SEQUENCE, &body))
}

/// The curve OID content bytes in a SEC1 ECPrivateKey:
/// `SEQUENCE { INTEGER 1, OCTET STRING, [0] OID OPTIONAL, [1] BIT STRING OPTIONAL }`.
fn sec1_curve_oid(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = read_tlv(der)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, _, rest) = read_tlv(body)?;
    if tag != TAG_INTEGER {
        return None;
    }
    let (tag, _, rest) = read_tlv(rest)?;
    if tag != TAG_OCTET_STRING {
        return None;
    }
    let (tag, params, _) = read_tlv(rest)?;
    if tag != TAG_CONTEXT_0 {
        return None;
    }
    let (tag, oid, _) = read_tlv(params)?;
    (tag == TAG_OID).then_some(oid)
}

/// Splits one DER TLV off `input`: (tag, content, rest). Lengths up to 4 bytes.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Encodes one DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests;
