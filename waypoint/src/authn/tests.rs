use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine;
use http::Request;
use mesh_api::l7::authn::{Jwks, JwtRule};

use super::*;

pub(super) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key of the tests, made by aws-lc-rs (not by the provider that verifies).
pub(super) enum TestKey {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair, &'static str),
    Ed(sig::Ed25519KeyPair),
}

impl TestKey {
    pub(super) fn rsa() -> Self {
        Self::Rsa(sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    /// `alg` "ES256" (P-256) or "ES384" (P-384).
    pub(super) fn ec(alg: &'static str) -> Self {
        let a = match alg {
            "ES256" => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            "ES384" => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => panic!("no curve for {alg}"),
        };
        Self::Ec(sig::EcdsaKeyPair::generate(a).unwrap(), alg)
    }

    pub(super) fn ed() -> Self {
        Self::Ed(sig::Ed25519KeyPair::generate().unwrap())
    }

    /// The public JWK, with `kid` and no `alg`.
    pub(super) fn jwk(&self, kid: &str) -> serde_json::Value {
        match self {
            Self::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                serde_json::json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)})
            }
            Self::Ec(k, alg) => {
                let p = k.public_key().as_ref();
                let n = (p.len() - 1) / 2;
                let crv = if *alg == "ES256" { "P-256" } else { "P-384" };
                serde_json::json!({"kty": "EC", "crv": crv, "kid": kid,
                    "x": b64(&p[1..=n]), "y": b64(&p[n + 1..])})
            }
            Self::Ed(k) => serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": b64(k.public_key().as_ref())}),
        }
    }

    /// The JWS signature of `input` with `alg` (RSA keys sign every RS*/PS* alg).
    pub(super) fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let enc: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    _ => panic!("RSA cannot sign {alg}"),
                };
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, input, &mut out).unwrap();
                out
            }
            Self::Ec(k, _) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            Self::Ed(k) => k.sign(input).as_ref().to_vec(),
        }
    }
}

/// A compact JWS of `claims` with header `{"alg": alg, "kid": kid}`, signed by `key`.
pub(super) fn jws(
    key: &TestKey,
    alg: &str,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    jws_signed_as(key, alg, alg, kid, claims)
}

/// Like [`jws`], but the header names `alg` while the signature is made with `signed_with`.
pub(super) fn jws_signed_as(
    key: &TestKey,
    alg: &str,
    signed_with: &str,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = serde_json::json!({"alg": alg, "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = k.into();
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let s = key.sign(signed_with, input.as_bytes());
    format!("{input}.{}", b64(&s))
}

/// A JWKS document of `keys`.
pub(super) fn jwks(keys: &[serde_json::Value]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

/// An ES256 key pair: (signing key, JWKS document with its public key as `kid`).
fn keypair(kid: &str) -> (TestKey, String) {
    let k = TestKey::ec("ES256");
    let set = jwks(&[k.jwk(kid)]);
    (k, set)
}

fn token(key: &TestKey, kid: &str, claims: serde_json::Value) -> String {
    jws(key, "ES256", Some(kid), &claims)
}

pub(super) fn rule(jwks: String) -> JwtRule {
    JwtRule {
        issuer: "https://issuer.example".into(),
        audiences: vec!["echo".into()],
        jwks: Jwks::Inline(jwks),
        from_headers: vec![("authorization".into(), "Bearer ".into())],
        from_params: vec!["access_token".into()],
        claim_headers: vec![("x-jwt-sub".into(), "sub".into())],
        forward_original_token: false,
    }
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(super) fn parts(uri: &str, auth: Option<&str>) -> Parts {
    let mut b = Request::get(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(()).unwrap().into_parts().0
}

#[tokio::test]
async fn valid_tokens_authenticate_and_set_claim_headers() {
    let (key, jwks) = keypair("k1");
    let r = rule(jwks);
    let t = token(
        &key,
        "k1",
        serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "aud": "echo", "exp": now() + 600, "groups": ["a"]}),
    );
    let a = Authenticator::default();
    let mut p = parts("/", Some(&format!("Bearer {t}")));
    let got = a.authenticate(&[&r], &mut p).await.unwrap().unwrap();
    assert_eq!(got.principal, "https://issuer.example/alice");
    assert_eq!(got.claims["groups"][0], "a");
    assert_eq!(p.headers["x-jwt-sub"], "alice");
    assert!(
        p.headers.get("authorization").is_none(),
        "token not forwarded"
    );
    // In the query parameter.
    let mut p = parts(&format!("/?access_token={t}"), None);
    assert!(a.authenticate(&[&r], &mut p).await.unwrap().is_some());
}

#[tokio::test]
async fn no_token_passes_and_bad_tokens_fail() {
    let (key, jwks) = keypair("k1");
    let (other_key, _) = keypair("k1");
    let r = rule(jwks);
    let a = Authenticator::default();
    assert_eq!(a.authenticate(&[&r], &mut parts("/", None)).await, Ok(None));
    let good = serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "aud": "echo", "exp": now() + 600});
    let cases = [
        (
            "expired",
            token(
                &key,
                "k1",
                serde_json::json!({"iss": "https://issuer.example", "sub": "a", "aud": "echo", "exp": now() - 3600}),
            ),
        ),
        (
            "wrong audience",
            token(
                &key,
                "k1",
                serde_json::json!({"iss": "https://issuer.example", "sub": "a", "aud": "other", "exp": now() + 600}),
            ),
        ),
        (
            "not yet valid",
            token(
                &key,
                "k1",
                serde_json::json!({"iss": "https://issuer.example", "sub": "a", "aud": "echo", "nbf": now() + 3600}),
            ),
        ),
        ("foreign key", token(&other_key, "k1", good.clone())),
        ("unknown kid", token(&key, "k2", good.clone())),
        (
            "other issuer",
            token(
                &key,
                "k1",
                serde_json::json!({"iss": "https://evil.example", "sub": "a", "exp": now() + 600}),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, t) in cases {
        let r2 = a
            .authenticate(&[&r], &mut parts("/", Some(&format!("Bearer {t}"))))
            .await;
        let e = r2.expect_err(what);
        assert!(e.starts_with("Jwt verification fails"), "{what}: {e}");
    }
}
