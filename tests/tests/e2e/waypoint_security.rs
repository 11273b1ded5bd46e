//! L7 authorization at the waypoint end to end: AuthorizationPolicies with `targetRefs` (to the
//! service, to the waypoint) decide on methods, paths, headers and the client's identity; a
//! denial is a 403 `RBAC: access denied` naming the policy in the access log; AUDIT policies
//! mark the requests they match and never deny; JWT keys come inline, over http or https.

#![allow(clippy::unwrap_used)]

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
    let logs = m.waypoint.logs_when(|l| {
        l.contains("denied by DENY policy default/deny-admin")
            && l.contains("no ALLOW policy matched (tried default/allow-client-reads)")
    });
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

/// The access-log record of the request for `path` (waits for it: the record is written when
/// the response body ends, possibly just after curl returned).
fn access_record(m: &L7Mesh, path: &str) -> String {
    let needle = format!("path={path} ");
    for _ in 0..50 {
        let logs = m.waypoint.logs();
        if let Some(l) = logs
            .lines()
            .find(|l| l.contains("request complete") && l.contains(&needle))
        {
            return l.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no access record for {path}:\n{}", m.waypoint.logs());
}

#[test]
fn audit_policies_mark_matching_requests_and_never_deny() {
    let m = L7Mesh::start(
        "wpaudit",
        &[EchoSpec::new("echo-v1-a-b", "echo", "v1")],
        ECHO_SERVICES,
    )
    .unwrap();
    let audit = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  action: AUDIT
  rules:
  - to: [{operation: {paths: [/admin/*]}}]
";
    m.waypoint.apply_routes("audit.yaml", audit).unwrap();
    let dump = m.waypoint.config_dump();
    assert_eq!(
        dump["routes"]["auditPolicies"][0]["name"], "audit-admin",
        "{dump}"
    );
    let get = |path: &str| m.curl(&format!("http://10.96.0.10{path}"), &[]).unwrap();
    // Matched by the AUDIT policy: served, and the record names the policy.
    assert_eq!(get("/admin/audited").status, 200, "{}", m.waypoint.logs());
    let rec = access_record(&m, "/admin/audited");
    assert!(
        rec.contains("audit") && rec.contains("default/audit-admin"),
        "{rec}"
    );
    // An AUDIT policy is no ALLOW list: other requests pass, unmarked.
    assert_eq!(get("/public/plain").status, 200);
    let rec = access_record(&m, "/public/plain");
    assert!(!rec.contains("audit-admin"), "{rec}");
    // With a DENY policy as well, the denial stands and the audit still reports the match.
    let deny = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin/*]}}]
";
    m.waypoint.apply_routes("deny.yaml", deny).unwrap();
    assert_eq!(get("/admin/denied").status, 403);
    let rec = access_record(&m, "/admin/denied");
    assert!(rec.contains("default/audit-admin"), "{rec}");
}

/// A CA, and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
fn tls_files() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mesh test JWKS CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// `openssl s_server -WWW` serving `dir` over TLS on 127.0.0.1:`port` of `pod`.
fn https_server(
    pod: &mesh_testbed::Pod,
    dir: &std::path::Path,
    port: u16,
) -> mesh_testbed::Process {
    let mut cmd = pod.command("openssl");
    cmd.current_dir(dir).args([
        "s_server",
        "-accept",
        &format!("127.0.0.1:{port}"),
        "-cert",
        "cert.pem",
        "-key",
        "key.pem",
        "-WWW",
        "-quiet",
    ]);
    let p = pod
        .netns
        .spawn_command(&format!("jwks-https-{port}"), cmd)
        .unwrap();
    pod.netns
        .wait_listening(port, std::time::Duration::from_secs(10))
        .unwrap();
    p
}

#[test]
fn jwks_fetched_over_https_with_an_extra_ca() {
    let (key, jwks) = keypair();
    let dir = tempfile::tempdir().unwrap();
    // Server 8443: certificate from the CA given to the waypoint with --jwks-ca.
    let trusted = dir.path().join("trusted");
    // Server 8444: certificate from a CA nobody trusts.
    let untrusted = dir.path().join("untrusted");
    let (ca_pem, cert, cert_key) = tls_files();
    let (_, other_cert, other_key) = tls_files();
    for (d, c, k) in [
        (&trusted, &cert, &cert_key),
        (&untrusted, &other_cert, &other_key),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("cert.pem"), c).unwrap();
        std::fs::write(d.join("key.pem"), k).unwrap();
        std::fs::write(d.join("jwks.json"), &jwks).unwrap();
    }
    let ca_file = dir.path().join("jwks-ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let ca_arg = ca_file.display().to_string();
    let m = L7Mesh::start_with_waypoint_args(
        "wpjwks",
        &[EchoSpec::new("echo-v1-a-b", "echo", "v1")],
        ECHO_SERVICES,
        &["--jwks-ca", &ca_arg],
    )
    .unwrap();
    let _trusted = https_server(m.waypoint_pod(), &trusted, 8443);
    let _untrusted = https_server(m.waypoint_pod(), &untrusted, 8444);
    let yaml = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  jwtRules:
  - {issuer: https://good.example, jwksUri: 'https://127.0.0.1:8443/jwks.json'}
  - {issuer: https://bad.example, jwksUri: 'https://127.0.0.1:8444/jwks.json'}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  rules:
  - from: [{source: {requestPrincipals: ['*']}}]
";
    m.waypoint.apply_routes("jwt.yaml", yaml).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |iss: &str| {
        sign(
            &key,
            serde_json::json!({"iss": iss, "sub": "alice", "exp": now + 600}),
        )
    };
    let get = |t: &str| {
        let auth = format!("Authorization: Bearer {t}");
        m.curl("http://10.96.0.10/secure", &["-H", &auth]).unwrap()
    };
    let r = get(&token("https://good.example"));
    assert_eq!(r.status, 200, "{}\n{}", r.body, m.waypoint.logs());
    // Same keys, but served with a certificate the waypoint cannot verify: no keys, 401.
    let r = get(&token("https://bad.example"));
    assert_eq!(r.status, 401, "{}", r.body);
    let logs = m
        .waypoint
        .logs_when(|l| l.contains("TLS with 127.0.0.1:8444 for JWKS failed"));
    assert!(
        logs.contains("TLS with 127.0.0.1:8444 for JWKS failed"),
        "{logs}"
    );
    // A forged token (another key) fails against the keys fetched over https.
    let (other, _) = keypair();
    let forged = sign(
        &other,
        serde_json::json!({"iss": "https://good.example", "sub": "mallory", "exp": now + 600}),
    );
    assert_eq!(get(&forged).status, 401);
}
