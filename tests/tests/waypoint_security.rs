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
