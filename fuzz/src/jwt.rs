//! `jwt_token`: a bearer token as a client sends it to the waypoint, verified against an inline
//! JWKS. Besides "no panic" it checks that a token is accepted only with a valid signature: the
//! signed part (header and payload) of an accepted token is that of the one token the key signed.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mesh_api::l7::authn::{Jwks, JwtRule};
use rcgen::{KeyPair, PublicKeyData, SigningKey};
use waypoint::authn::Authenticator;

/// The issuer of the rule and the seed token.
const ISSUER: &str = "https://issuer.fuzz.example";

/// A P-256 key made for these tests only; its public half is the rule's JWKS.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcfZnfy2EpkUwOIh/
ZYnJPPhHHsnNqBKNJddQ4JEDjl+hRANCAAR1vc+h0JRh8nvtdieN3uej7s7x6cvF
pwRvCJCffNNx/butkpmEH1X7jo9sVJE1MPQj/6hHHtHcX/Rg6mTBMcFV
-----END PRIVATE KEY-----
";

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::from_pem(TEST_KEY_PEM).expect("the test key is a valid PKCS#8 key"))
}

fn rule() -> JwtRule {
    // Uncompressed point: 0x04, then x and y.
    let point = key().subject_public_key_info();
    let raw = &point[point.len() - 64..];
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "fuzz",
        "x": URL_SAFE_NO_PAD.encode(&raw[..32]),
        "y": URL_SAFE_NO_PAD.encode(&raw[32..]),
    }]});
    JwtRule {
        issuer: ISSUER.to_owned(),
        audiences: Vec::new(),
        jwks: Jwks::Inline(jwks.to_string()),
        from_headers: vec![("authorization".to_owned(), "Bearer ".to_owned())],
        from_params: vec!["access_token".to_owned()],
        claim_headers: vec![("x-jwt-sub".to_owned(), "sub".to_owned())],
        forward_original_token: false,
    }
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| Authenticator::new(None).expect("the JWT crypto provider installs"))
}

/// Sends `data` as a bearer token and checks the verdict.
pub fn jwt_token(data: &[u8]) {
    jwt_principal(data);
}

/// [`jwt_token`], returning the principal of an accepted token.
pub fn jwt_principal(data: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(data).ok()?;
    let Ok(req) = http::Request::builder()
        .uri("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
    else {
        return None;
    };
    let (mut parts, ()) = req.into_parts();
    let rule = rule();
    let verdict = crate::runtime().block_on(authenticator().authenticate(&[&rule], &mut parts));
    if let Ok(Some(accepted)) = verdict {
        assert_eq!(
            signed_part(token.trim()),
            seed_signed_part(),
            "a token was accepted without the key's signature"
        );
        assert_eq!(accepted.principal, format!("{ISSUER}/fuzzer"));
        return Some(accepted.principal);
    }
    None
}

/// `header.payload` of a compact JWS.
fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(signed, _)| signed)
}

/// `header.payload` of the one token the test key signs (`sub` "fuzzer", expiring in 2100).
fn seed_signed_part() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT","kid":"fuzz"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"iss":"{ISSUER}","sub":"fuzzer","exp":4102444800}}"#
    ));
    format!("{header}.{payload}")
}

/// That token, signed: the rule accepts it; the seed of the corpus.
pub fn jwt_seed() -> Vec<u8> {
    let signed = seed_signed_part();
    let der = key().sign(signed.as_bytes()).expect("the test key signs");
    let raw = raw_signature(&der).expect("an ECDSA signature is two DER integers");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(raw)).into_bytes()
}

/// JOSE `r || s` (32 bytes each) from a DER `Ecdsa-Sig-Value`.
fn raw_signature(der: &[u8]) -> Option<Vec<u8>> {
    let body = der.strip_prefix(&[0x30])?;
    let body = body.get(1..)?;
    let mut out = Vec::with_capacity(64);
    let mut rest = body;
    for _ in 0..2 {
        let (&tag, after) = rest.split_first()?;
        let (&len, after) = after.split_first()?;
        if tag != 0x02 {
            return None;
        }
        let (int, after) = after.split_at_checked(usize::from(len))?;
        let int = int.strip_prefix(&[0]).unwrap_or(int);
        out.extend(std::iter::repeat_n(0, 32usize.checked_sub(int.len())?));
        out.extend_from_slice(int);
        rest = after;
    }
    Some(out)
}
