//! JWS signature checks through the process's rustls crypto provider
//! ([`mesh_identity::tls::provider`]: aws-lc-rs by default, BoringSSL with the `fips` feature).
//!
//! [`install`] makes [`PROVIDER`] jsonwebtoken's process-wide `CryptoProvider`: jsonwebtoken still
//! parses tokens and validates claims, but every signature goes to the rustls provider's
//! `signature_verification_algorithms` (the same code as HBONE certificate checks), so a `fips`
//! build does no JWT crypto outside BoringSSL. The waypoint only verifies, never signs: the signing
//! half of [`PROVIDER`] answers errors.
//!
//! Formats handed to the rustls algorithms: RSA keys as DER `RSAPublicKey` (from the JWK's `n`/`e`,
//! 2048 to 8192 bits in both builds), EC keys as uncompressed SEC1 points, Ed25519 keys raw; JOSE
//! ECDSA signatures (`r || s`) are re-encoded as DER `Ecdsa-Sig-Value`.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{AlgorithmIdentifier, SignatureVerificationAlgorithm, alg_id};

/// Smallest RSA modulus accepted (RFC 7518 3.3: "2048 bits or larger MUST be used").
const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted (as webpki: bounds the cost of one verification).
const RSA_MAX_BITS: usize = 8192;

/// jsonwebtoken's crypto, backed by the rustls provider (verification only).
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: no_rsa_components,
        rsa_pub_components_from_public_key: no_rsa_components,
        ec_pub_components_from_private_key: no_ec_components,
        ed_pub_components_from_private_key: no_ed_components,
        compute_digest: no_digest,
    },
};

/// Installs [`PROVIDER`] as jsonwebtoken's process-wide provider (once; later calls return the
/// first outcome). Fails when another provider got there first: tokens are then refused rather
/// than verified by crypto outside the rustls provider.
pub fn install() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| match CryptoProvider::install_default(&PROVIDER) {
        Ok(()) => Ok(()),
        Err(first) if std::ptr::eq(first, &PROVIDER) => Ok(()),
        Err(_) => Err(
            "another JWT crypto provider was installed in this process before the waypoint's; \
             refusing to verify tokens outside the rustls provider"
                .to_owned(),
        ),
    })
    .clone()
}

/// The signature algorithms of the process's rustls provider.
fn algorithms() -> WebPkiSupportedAlgorithms {
    static ALGS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *ALGS.get_or_init(|| mesh_identity::tls::provider().signature_verification_algorithms)
}

/// The (public key, signature) algorithm identifiers of a JWS algorithm; `None` for HMAC.
fn ids(alg: Algorithm) -> Option<(AlgorithmIdentifier, AlgorithmIdentifier)> {
    use Algorithm::*;
    Some(match alg {
        RS256 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA256),
        RS384 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA384),
        RS512 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA512),
        PS256 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA256),
        PS384 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA384),
        PS512 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA512),
        ES256 => (alg_id::ECDSA_P256, alg_id::ECDSA_SHA256),
        ES384 => (alg_id::ECDSA_P384, alg_id::ECDSA_SHA384),
        EdDSA => (alg_id::ED25519, alg_id::ED25519),
        // HMAC (HS*) and algorithms added to jsonwebtoken later.
        _ => return None,
    })
}

/// The rustls provider's verifier for `alg`: `None` for HMAC and for algorithms the provider
/// lacks (EdDSA in the `fips` build).
pub fn provider_algorithm(alg: Algorithm) -> Option<&'static dyn SignatureVerificationAlgorithm> {
    let (key, sig) = ids(alg)?;
    algorithms()
        .all
        .iter()
        .copied()
        .find(|a| a.public_key_alg_id() == key && a.signature_alg_id() == sig)
}

/// Scalar length in bytes of the curve of an ECDSA algorithm.
fn ec_scalar_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::ES256 => Some(32),
        Algorithm::ES384 => Some(48),
        _ => None,
    }
}

/// One token's signature check: a rustls algorithm and the public key in its format.
struct RustlsVerifier {
    alg: Algorithm,
    check: &'static dyn SignatureVerificationAlgorithm,
    public_key: Vec<u8>,
}

impl Verifier<Vec<u8>> for RustlsVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let der;
        let sig = match ec_scalar_len(self.alg) {
            Some(n) => {
                der = ecdsa_sig_der(sig, n).ok_or_else(signature::Error::new)?;
                &der[..]
            }
            None => &sig[..],
        };
        self.check
            .verify_signature(&self.public_key, msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RustlsVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let check = provider_algorithm(alg).ok_or(ErrorKind::UnsupportedAlgorithm)?;
    let public_key = match (alg.family(), key.kind()) {
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            rsa_public_key_der(n, e).map_err(|m| ErrorKind::InvalidRsaKey(m.to_owned()))?
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let n = ec_scalar_len(alg).ok_or(ErrorKind::InvalidAlgorithm)?;
            if point.len() != 1 + 2 * n || point.first() != Some(&4) {
                return Err(ErrorKind::InvalidEcdsaKey.into());
            }
            point.clone()
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(x)) if x.len() == 32 => x.clone(),
        (AlgorithmFamily::Ed, _) => return Err(ErrorKind::InvalidEddsaKey.into()),
        _ => return Err(ErrorKind::InvalidKeyFormat.into()),
    };
    Ok(Box::new(RustlsVerifier {
        alg,
        check,
        public_key,
    }))
}

/// `bytes` without leading zero bytes (an empty slice stays empty).
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// DER `RSAPublicKey` from big-endian `n` and `e`, with the modulus size checked.
pub fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (n, e) = (strip_zeros(n), strip_zeros(e));
    let bits = match n.first() {
        Some(top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err("RSA modulus must have 2048 to 8192 bits");
    }
    if e.is_empty() {
        return Err("RSA exponent is zero");
    }
    let mut body = der_uint(n);
    body.extend(der_uint(e));
    Ok(der(0x30, &body))
}

/// DER `Ecdsa-Sig-Value` from a JOSE ECDSA signature (`r || s`, each `n` bytes).
pub fn ecdsa_sig_der(sig: &[u8], n: usize) -> Option<Vec<u8>> {
    if sig.len() != 2 * n {
        return None;
    }
    let (r, s) = sig.split_at(n);
    let mut body = der_uint(strip_zeros(r));
    body.extend(der_uint(strip_zeros(s)));
    Some(der(0x30, &body))
}

/// A DER INTEGER of an unsigned big-endian number without leading zeros.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(v);
    der(0x02, &content)
}

/// A DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 4);
    out.push(tag);
    // Contents here are at most a few KiB (an 8192-bit modulus): short form or two length bytes.
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn signing_unsupported() -> Error {
    ErrorKind::Provider("the waypoint verifies JWTs and never signs or derives keys".to_owned())
        .into()
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(signing_unsupported())
}

#[allow(clippy::type_complexity)]
fn no_rsa_components(_: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Err(signing_unsupported())
}

#[allow(clippy::type_complexity)]
fn no_ec_components(_: &[u8], _: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    Err(signing_unsupported())
}

fn no_ed_components(_: &[u8], _: &EllipticCurve) -> Result<Vec<u8>, Error> {
    Err(signing_unsupported())
}

fn no_digest(_: &[u8], _: ThumbprintHash) -> Result<Vec<u8>, Error> {
    Err(signing_unsupported())
}
