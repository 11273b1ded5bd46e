//! Signature algorithms through the rustls provider: every supported JWS alg with real keys,
//! tampering, wrong keys, algorithm confusion. Run in both builds (default aws-lc-rs and `fips`
//! BoringSSL); the tokens are signed by aws-lc-rs directly, never by the verifying provider.

use super::tests::{TestKey, b64, jwks, jws, jws_signed_as, now, parts, rule};
use super::*;

fn claims() -> serde_json::Value {
    serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "aud": "echo", "exp": now() + 600})
}

async fn check(jwks_doc: String, token: &str) -> Result<Option<Authenticated>, String> {
    let r = rule(jwks_doc);
    Authenticator::default()
        .authenticate(&[&r], &mut parts("/", Some(&format!("Bearer {token}"))))
        .await
}

/// `token` with one bit of its signature flipped.
fn tampered(token: &str) -> String {
    use base64::Engine;
    let (input, s) = token.rsplit_once('.').unwrap();
    let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap();
    let mid = s.len() / 2;
    s[mid] ^= 0x01;
    format!("{input}.{}", b64(&s))
}

const RSA_ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

#[tokio::test]
async fn every_rsa_alg_verifies_and_rejects_tampering() {
    let key = TestKey::rsa();
    let doc = jwks(&[key.jwk("r1")]);
    for alg in RSA_ALGS {
        let t = jws(&key, alg, Some("r1"), &claims());
        let got = check(doc.clone(), &t).await;
        let got = got.unwrap_or_else(|e| panic!("{alg}: {e}")).unwrap();
        assert_eq!(got.principal, "https://issuer.example/alice", "{alg}");
        let e = check(doc.clone(), &tampered(&t)).await.unwrap_err();
        assert!(e.contains("InvalidSignature"), "{alg} tampered: {e}");
    }
}

#[tokio::test]
async fn pkcs1_and_pss_signatures_are_not_interchangeable() {
    let key = TestKey::rsa();
    let doc = jwks(&[key.jwk("r1")]);
    // A PSS signature under an RS256 header and a PKCS#1 v1.5 one under a PS256 header.
    for (claimed, signed) in [("RS256", "PS256"), ("PS256", "RS256"), ("RS256", "RS384")] {
        let t = jws_signed_as(&key, claimed, signed, Some("r1"), &claims());
        let e = check(doc.clone(), &t).await.unwrap_err();
        assert!(e.contains("InvalidSignature"), "{claimed}/{signed}: {e}");
        // The same signature under its own alg verifies.
        assert!(
            check(doc.clone(), &jws(&key, signed, Some("r1"), &claims()))
                .await
                .is_ok()
        );
    }
}

/// What this build verifies: the rustls provider's list (BoringSSL's FIPS list has no Ed25519).
const SUPPORTED: &str = if cfg!(feature = "fips") {
    "supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384"
} else {
    "supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
};

#[tokio::test]
async fn ecdsa_p256_and_p384_verify_and_reject_tampering() {
    for alg in ["ES256", "ES384"] {
        let key = TestKey::ec(alg);
        let doc = jwks(&[key.jwk("e1")]);
        let t = jws(&key, alg, Some("e1"), &claims());
        assert!(check(doc.clone(), &t).await.unwrap().is_some(), "{alg}");
        let e = check(doc.clone(), &tampered(&t)).await.unwrap_err();
        assert!(e.contains("InvalidSignature"), "{alg} tampered: {e}");
        // A JOSE signature must be exactly r || s; the DER form is not accepted.
        let (input, s) = t.rsplit_once('.').unwrap();
        let raw =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap();
        let der = crypto::ecdsa_sig_der(&raw, raw.len() / 2).unwrap();
        let e = check(doc, &format!("{input}.{}", b64(&der)))
            .await
            .unwrap_err();
        assert!(e.contains("InvalidSignature"), "{alg} DER: {e}");
    }
}

/// r or s with a leading zero byte (about 1 signature in 128) must be re-encoded minimally.
#[tokio::test]
async fn ecdsa_signatures_with_short_r_or_s_verify() {
    let key = TestKey::ec("ES256");
    let doc = jwks(&[key.jwk("e1")]);
    let mut found = 0;
    for i in 0..4000 {
        let mut c = claims();
        c["jti"] = i.into();
        let t = jws(&key, "ES256", Some("e1"), &c);
        let s = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            t.rsplit_once('.').unwrap().1,
        )
        .unwrap();
        if s[0] == 0 || s[32] == 0 {
            assert!(check(doc.clone(), &t).await.is_ok(), "signature {s:02x?}");
            found += 1;
            if found == 3 {
                return;
            }
        }
    }
    panic!("no signature with a leading zero byte in 4000 tries");
}

#[tokio::test]
async fn eddsa_verifies_where_the_provider_has_ed25519() {
    let key = TestKey::ed();
    let doc = jwks(&[key.jwk("d1")]);
    let t = jws(&key, "EdDSA", Some("d1"), &claims());
    let got = check(doc.clone(), &t).await;
    if cfg!(feature = "fips") {
        // BoringSSL's FIPS algorithm list has no Ed25519.
        let e = got.unwrap_err();
        assert!(
            e.contains("token alg EdDSA is not available with the boringssl crypto provider"),
            "{e}"
        );
        assert!(e.ends_with(SUPPORTED), "{e}");
    } else {
        assert!(got.unwrap().is_some());
        let e = check(doc, &tampered(&t)).await.unwrap_err();
        assert!(e.contains("InvalidSignature"), "{e}");
    }
}

#[tokio::test]
async fn a_token_signed_by_another_key_fails() {
    let (good, other) = (TestKey::ec("ES256"), TestKey::ec("ES256"));
    let t = jws(&other, "ES256", Some("k"), &claims());
    let e = check(jwks(&[good.jwk("k")]), &t).await.unwrap_err();
    assert!(e.contains("InvalidSignature"), "{e}");
    let (good, other) = (TestKey::rsa(), TestKey::rsa());
    let t = jws(&other, "RS256", Some("k"), &claims());
    let e = check(jwks(&[good.jwk("k")]), &t).await.unwrap_err();
    assert!(e.contains("InvalidSignature"), "{e}");
}

#[tokio::test]
async fn key_type_curve_and_alg_must_match_the_token() {
    let rsa = TestKey::rsa();
    let p256 = TestKey::ec("ES256");
    let p384 = TestKey::ec("ES384");
    // ES256 token, the kid names an RSA key.
    let t = jws(&p256, "ES256", Some("k"), &claims());
    let e = check(jwks(&[rsa.jwk("k")]), &t).await.unwrap_err();
    assert!(
        e.contains("a RSA key cannot verify a token with alg ES256"),
        "{e}"
    );
    // ES256 token, the key is on P-384.
    let e = check(jwks(&[p384.jwk("k")]), &t).await.unwrap_err();
    assert!(e.contains("cannot verify a token with alg ES256"), "{e}");
    // RS256 token, the key says it is for PS256 only.
    let t = jws(&rsa, "RS256", Some("k"), &claims());
    let mut jwk = rsa.jwk("k");
    jwk["alg"] = "PS256".into();
    let e = check(jwks(&[jwk.clone()]), &t).await.unwrap_err();
    assert!(
        e.contains("key alg PS256 does not match token alg RS256"),
        "{e}"
    );
    jwk["alg"] = "RS256".into();
    assert!(check(jwks(&[jwk.clone()]), &t).await.is_ok());
    // An encryption key.
    jwk["use"] = "enc".into();
    let e = check(jwks(&[jwk]), &t).await.unwrap_err();
    assert!(e.contains("key use"), "{e}");
    // Without kid every key is tried; only the one of the right type verifies.
    let t = jws(&p256, "ES256", None, &claims());
    let doc = jwks(&[rsa.jwk("a"), p384.jwk("b"), p256.jwk("c")]);
    assert!(check(doc, &t).await.unwrap().is_some());
}

#[tokio::test]
async fn none_and_hmac_tokens_are_refused() {
    let rsa = TestKey::rsa();
    let doc = jwks(&[rsa.jwk("k")]);
    let body = b64(claims().to_string().as_bytes());
    for none in ["none", "None", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{none}","kid":"k"}}"#).as_bytes());
        let e = check(doc.clone(), &format!("{header}.{body}."))
            .await
            .unwrap_err();
        assert!(e.contains("alg none"), "{none}: {e}");
    }
    // The classic confusion: HS256 keyed with the RSA public key as the HMAC secret.
    let secret = aws_lc_rs::signature::KeyPair::public_key(match &rsa {
        TestKey::Rsa(k) => k,
        _ => unreachable!(),
    })
    .as_ref()
    .to_vec();
    let header = b64(br#"{"alg":"HS256","kid":"k"}"#);
    let input = format!("{header}.{body}");
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
        input.as_bytes(),
    );
    let forged = format!("{input}.{}", b64(mac.as_ref()));
    let e = check(doc, &forged).await.unwrap_err();
    assert!(e.contains("HMAC token (alg HS256) refused"), "{e}");
    // A symmetric key in the JWKS is never used, whatever the token says.
    let oct = serde_json::json!({"kty": "oct", "kid": "s", "k": b64(b"secret")});
    let e = check(jwks(&[oct]), &jws(&rsa, "RS256", Some("s"), &claims()))
        .await
        .unwrap_err();
    assert!(e.contains("symmetric (oct) keys are not accepted"), "{e}");
}

#[tokio::test]
async fn unknown_algorithms_and_crit_headers_are_refused_clearly() {
    let key = TestKey::ec("ES256");
    let doc = jwks(&[key.jwk("k")]);
    let body = b64(claims().to_string().as_bytes());
    let header = b64(br#"{"alg":"ES512","kid":"k"}"#);
    let e = check(doc.clone(), &format!("{header}.{body}.AAAA"))
        .await
        .unwrap_err();
    assert!(e.starts_with("Jwt verification fails"), "{e}");
    assert!(e.contains(r#"unsupported token alg "ES512"; "#), "{e}");
    assert!(e.ends_with(SUPPORTED), "{e}");
    let header = b64(br#"{"kid":"k"}"#);
    let e = check(doc.clone(), &format!("{header}.{body}.AAAA"))
        .await
        .unwrap_err();
    assert!(e.contains("no alg"), "{e}");
    let header = b64(br#"{"alg":"ES256","kid":"k","crit":["exp"]}"#);
    let e = check(doc, &format!("{header}.{body}.AAAA"))
        .await
        .unwrap_err();
    assert!(e.contains("crit"), "{e}");
}

#[tokio::test]
async fn rsa_keys_under_2048_bits_are_refused() {
    // A 1024-bit modulus (refused before any signature check).
    let mut n = vec![0xc5; 128];
    n[127] |= 1;
    let jwk = serde_json::json!({"kty": "RSA", "kid": "k", "n": b64(&n), "e": b64(&[1, 0, 1])});
    let key = TestKey::rsa();
    let e = check(jwks(&[jwk]), &jws(&key, "RS256", Some("k"), &claims()))
        .await
        .unwrap_err();
    assert!(e.contains("2048 to 8192 bits"), "{e}");
}

#[test]
fn the_rsa_public_key_der_matches_aws_lc() {
    let TestKey::Rsa(k) = TestKey::rsa() else {
        unreachable!()
    };
    let pk = aws_lc_rs::signature::KeyPair::public_key(&k);
    let c = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(pk);
    // With and without redundant leading zeros in n and e.
    assert_eq!(crypto::rsa_public_key_der(&c.n, &c.e).unwrap(), pk.as_ref());
    let (mut n, mut e) = (vec![0, 0], vec![0]);
    n.extend(&c.n);
    e.extend(&c.e);
    assert_eq!(crypto::rsa_public_key_der(&n, &e).unwrap(), pk.as_ref());
    assert!(crypto::rsa_public_key_der(&c.n, &[0]).is_err());
}

#[test]
fn jose_ecdsa_signatures_become_minimal_der() {
    // r has its top bit set (needs a 0x00 pad), s has leading zero bytes (stripped).
    let mut raw = vec![0x80; 32];
    raw.extend([0, 0, 0x7f]);
    raw.extend(vec![1; 29]);
    let der = crypto::ecdsa_sig_der(&raw, 32).unwrap();
    let mut want = vec![0x30, 35 + 32, 0x02, 33, 0x00];
    want.extend(vec![0x80; 32]);
    want.extend([0x02, 30, 0x7f]);
    want.extend(vec![1; 29]);
    assert_eq!(der, want);
    assert!(
        crypto::ecdsa_sig_der(&raw[1..], 32).is_none(),
        "wrong length"
    );
}

#[test]
fn jsonwebtoken_has_no_crypto_but_the_rustls_provider() {
    crypto::install().unwrap();
    assert!(crypto::install().is_ok(), "installing twice is fine");
    // jsonwebtoken's process-wide provider is the waypoint's: it refuses to sign.
    let key = jsonwebtoken::EncodingKey::from_secret(b"s");
    let e = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims(), &key).unwrap_err();
    assert!(e.to_string().contains("never signs"), "{e}");
    // And it verifies with exactly the rustls provider's algorithms.
    let provider = mesh_identity::tls::provider();
    for alg in [
        jsonwebtoken::Algorithm::ES256,
        jsonwebtoken::Algorithm::PS512,
    ] {
        let a = crypto::provider_algorithm(alg).unwrap();
        assert!(
            provider
                .signature_verification_algorithms
                .all
                .iter()
                .any(|p| std::ptr::addr_eq(*p, a)),
            "{alg:?}"
        );
        // The fips build's verifiers are BoringSSL's.
        let boring = format!("{a:?}").contains("Boring");
        assert_eq!(boring, cfg!(feature = "fips"), "{alg:?}: {a:?}");
    }
}
