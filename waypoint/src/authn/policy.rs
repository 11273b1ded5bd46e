//! Which tokens and keys may be used together: the token's `alg` must be a public-key signature
//! algorithm the rustls provider can verify (`none` and HMAC are refused, so a public key can
//! never be used as an HMAC secret), and the JWK must be of that algorithm's key type (and
//! curve), with its own `alg`, `use` and `key_ops` (when present) agreeing.

use std::str::FromStr;

use base64::Engine;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};

use super::crypto;

/// Every JWS algorithm the waypoint knows how to verify (if the provider has it).
const KNOWN: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The algorithms this build verifies, as a comma-separated list for error messages.
pub fn supported() -> String {
    KNOWN
        .iter()
        .filter(|a| crypto::provider_algorithm(**a).is_some())
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `alg` of the token's header if the waypoint verifies it, else why not.
pub fn token_algorithm(token: &str) -> Result<Algorithm, String> {
    let header = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or("malformed token: the header is not base64url-encoded JSON")?;
    if header.get("crit").is_some() {
        return Err("token header has critical extensions (crit), which are not supported".into());
    }
    let Some(name) = header.get("alg").and_then(|a| a.as_str()) else {
        return Err("token header has no alg".into());
    };
    if name.eq_ignore_ascii_case("none") {
        return Err("unsigned token (alg none) refused".into());
    }
    match Algorithm::from_str(name) {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => Err(format!(
            "HMAC token (alg {name}) refused: only public-key signatures (JWKS) are verified"
        )),
        Ok(a) if crypto::provider_algorithm(a).is_some() => Ok(a),
        Ok(_) => Err(format!(
            "token alg {name} is not available with the {} crypto provider; supported: {}",
            mesh_identity::tls::provider_name(),
            supported()
        )),
        Err(_) => Err(format!(
            "unsupported token alg {name:?}; supported: {}",
            supported()
        )),
    }
}

/// `Ok` when `jwk` may verify a token signed with `alg`.
pub fn key_fits(jwk: &Jwk, alg: Algorithm) -> Result<(), String> {
    let c = &jwk.common;
    if let Some(u) = &c.public_key_use
        && *u != PublicKeyUse::Signature
    {
        return Err(format!("key use is {u:?}, not sig"));
    }
    if let Some(ops) = &c.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("key_ops does not include verify".into());
    }
    if let Some(ka) = c.key_algorithm
        && Algorithm::from_str(&ka.to_string()).ok() != Some(alg)
    {
        return Err(format!("key alg {ka} does not match token alg {alg:?}"));
    }
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err("symmetric (oct) keys are not accepted".into());
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "a {} key cannot verify a token with alg {alg:?}",
            key_type(jwk)
        ))
    }
}

/// `kty` (and curve) of a key, for messages.
fn key_type(jwk: &Jwk) -> String {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => "RSA".into(),
        AlgorithmParameters::EllipticCurve(p) => format!("EC {:?}", p.curve),
        AlgorithmParameters::OctetKeyPair(p) => format!("OKP {:?}", p.curve),
        AlgorithmParameters::OctetKey(_) => "oct".into(),
        _ => "unknown kty".into(),
    }
}
