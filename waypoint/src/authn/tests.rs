use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mesh_api::l7::authn::{Jwks, JwtRule};

use super::*;

/// An ES256 key pair: (signing key, JWKS document with its public key as `kid`).
fn keypair(kid: &str) -> (EncodingKey, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let enc = EncodingKey::from_ec_der(&kp.serialize_der());
    let raw = kp.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
    }]});
    (enc, jwks.to_string())
}

fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn rule(jwks: String) -> JwtRule {
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn parts(uri: &str, auth: Option<&str>) -> Parts {
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
