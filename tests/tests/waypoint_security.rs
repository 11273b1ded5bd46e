//! L7 authorization at the waypoint end to end: AuthorizationPolicies with `targetRefs` (to the
//! service, to the waypoint) decide on methods, paths, headers and the client's identity; a
//! denial is a 403 `RBAC: access denied` naming the policy in the access log.

use mesh_testbed::l7::{ECHO_SERVICES, EchoSpec, L7Mesh};

const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client-reads, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
    to: [{operation: {methods: [GET, HEAD], paths: [/public/*, /admin/*]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin/*]}}]
  - when: [{key: 'request.headers[x-block]', values: ['yes']}]
";

#[test]
fn authorization_policies_allow_and_deny_http_requests() {
    let m = L7Mesh::start(
        "wpsec",
        &[EchoSpec::new("echo-v1-a-b", "echo", "v1")],
        ECHO_SERVICES,
    )
    .unwrap();
    let get =
        |path: &str, extra: &[&str]| m.curl(&format!("http://10.96.0.10{path}"), extra).unwrap();
    // Without policies everything passes.
    assert_eq!(get("/admin/x", &[]).status, 200);
    m.waypoint.apply_routes("policies.yaml", POLICIES).unwrap();
    let ok = get("/public/a", &[]);
    assert_eq!(ok.status, 200, "{}\n{}", ok.body, m.waypoint.logs());
    let denied = get("/admin/x", &[]);
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(
        get("/public/a", &["-H", "x-block: yes"]).status,
        403,
        "DENY on a header"
    );
    assert_eq!(
        get("/public/a", &["-X", "POST"]).status,
        403,
        "no ALLOW rule for POST"
    );
    assert_eq!(
        get("/elsewhere", &[]).status,
        403,
        "no ALLOW rule for the path"
    );
    let logs = m.waypoint.logs();
    assert!(
        logs.contains("denied by DENY policy default/deny-admin"),
        "{logs}"
    );
    assert!(
        logs.contains("no ALLOW policy matched (tried default/allow-client-reads)"),
        "{logs}"
    );
    let metrics = m.waypoint.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"403\"")
                && l.contains("response_flags=\"RBAC\"")),
        "{metrics}"
    );
}

/// An ES256 key: (signing key, JWKS document).
fn keypair() -> (jsonwebtoken::EncodingKey, String) {
    use base64::Engine;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let raw = kp.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k1",
        "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
    (
        jsonwebtoken::EncodingKey::from_ec_der(&kp.serialize_der()),
        jwks.to_string(),
    )
}

fn sign(key: &jsonwebtoken::EncodingKey, claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    jsonwebtoken::encode(&h, &claims, key).expect("signed token")
}

#[test]
fn jwt_request_authentication_with_request_principal_policies() {
    let (key, jwks) = keypair();
    let m = L7Mesh::start(
        "wpjwt",
        &[EchoSpec::new("echo-v1-a-b", "echo", "v1")],
        ECHO_SERVICES,
    )
    .unwrap();
    let yaml = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: echo}}]
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{jwks}'
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: default}}
spec:
  targetRefs: [{{kind: Service, group: '', name: echo}}]
  rules:
  - to: [{{operation: {{paths: [/public]}}}}]
  - from: [{{source: {{requestPrincipals: ['https://issuer.example/*']}}}}]
    when: [{{key: 'request.auth.claims[role]', values: [admin]}}]
"
    );
    m.waypoint.apply_routes("jwt.yaml", &yaml).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let admin = sign(
        &key,
        serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "role": "admin", "exp": now + 600}),
    );
    let user = sign(
        &key,
        serde_json::json!({"iss": "https://issuer.example", "sub": "bob", "role": "user", "exp": now + 600}),
    );
    let expired = sign(
        &key,
        serde_json::json!({"iss": "https://issuer.example", "sub": "alice", "role": "admin", "exp": now - 3600}),
    );
    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let extra: Vec<&str> = auth.iter().flat_map(|a| ["-H", a.as_str()]).collect();
        m.curl(&format!("http://10.96.0.10{path}"), &extra).unwrap()
    };
    assert_eq!(get("/public", None).status, 200, "{}", m.waypoint.logs());
    let r = get("/secure", None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "RBAC: access denied"),
        "no token"
    );
    let r = get("/secure", Some(&expired));
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, "Jwt verification fails"),
        "expired token"
    );
    assert_eq!(get("/secure", Some("garbage")).status, 401);
    assert_eq!(
        get("/secure", Some(&user)).status,
        403,
        "claim does not match"
    );
    let r = get("/secure", Some(&admin));
    assert_eq!(r.status, 200, "{}", m.waypoint.logs());
    assert_eq!(r.backend_header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(
        r.backend_header("authorization"),
        None,
        "the token is not forwarded"
    );
}
