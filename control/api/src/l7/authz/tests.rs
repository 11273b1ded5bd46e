use super::*;
use crate::authz::AuthorizationPolicySpec;
use crate::l7::matching::SimpleRequest;

fn policy(ns: &str, name: &str, yaml: &str) -> Policy {
    let spec: AuthorizationPolicySpec = serde_yaml_ng::from_str(yaml).expect("yaml");
    Policy::from_spec(name, ns, spec).expect("valid policy")
}

fn id(ns: &str, sa: &str) -> PeerIdentity {
    PeerIdentity::new("cluster.local", ns, sa)
}

fn attrs<'a>(
    who: &'a PeerIdentity,
    principal: Option<&'a str>,
    claims: Option<&'a serde_json::Value>,
) -> HttpAttrs<'a> {
    HttpAttrs {
        src_identity: Some(who),
        src_ip: "10.1.0.2".parse().unwrap(),
        dst_ip: "10.96.0.10".parse().unwrap(),
        dst_port: 80,
        host: "echo.default.svc.cluster.local",
        request_principal: principal,
        claims,
    }
}

#[test]
fn only_policies_targeting_the_waypoint_or_the_service_apply() {
    let ps = vec![
        policy(
            "default",
            "gw",
            "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]\naction: DENY\nrules: [{}]",
        ),
        policy(
            "default",
            "svc",
            "targetRefs: [{kind: Service, group: '', name: echo}]\nrules: [{}]",
        ),
        policy(
            "default",
            "other-svc",
            "targetRefs: [{kind: Service, group: '', name: other}]\nrules: [{}]",
        ),
        policy(
            "default",
            "ztunnel",
            "selector: {matchLabels: {app: echo}}\nrules: [{}]",
        ),
        policy(
            "istio-system",
            "class",
            "targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]\nrules: [{}]",
        ),
    ];
    let got: Vec<String> = applicable(
        &ps,
        "istio-system",
        ("default", "waypoint"),
        Some(("default", "echo")),
    )
    .iter()
    .map(|p| p.name.clone())
    .collect();
    assert_eq!(got, ["gw", "svc", "class"]);
}

#[test]
fn methods_paths_hosts_and_principals_decide() {
    let allow = policy(
        "default",
        "allow-get",
        "targetRefs: [{kind: Service, group: '', name: echo}]
rules:
- from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
  to: [{operation: {methods: [GET], paths: [/api/*], hosts: ['echo.default.svc.cluster.local']}}]",
    );
    let deny = policy(
        "default",
        "deny-admin",
        "targetRefs: [{kind: Service, group: '', name: echo}]
action: DENY
rules: [{to: [{operation: {paths: [/api/admin*]}}]}]",
    );
    let ps = [&allow, &deny];
    let client = id("default", "client");
    let other = id("default", "other");
    let a = attrs(&client, None, None);
    assert!(evaluate(&ps, &a, &SimpleRequest::new("GET", "/api/items?x=1")).is_allowed());
    assert_eq!(
        evaluate(&ps, &a, &SimpleRequest::new("GET", "/api/admin/x")),
        Decision::Deny(DenyReason::DeniedBy(deny.key()))
    );
    assert!(!evaluate(&ps, &a, &SimpleRequest::new("POST", "/api/items")).is_allowed());
    assert!(!evaluate(&ps, &a, &SimpleRequest::new("GET", "/other")).is_allowed());
    let o = attrs(&other, None, None);
    let d = evaluate(&ps, &o, &SimpleRequest::new("GET", "/api/items"));
    assert_eq!(
        d,
        Decision::Deny(DenyReason::NoAllowMatch(vec![allow.key()]))
    );
}

#[test]
fn jwt_principals_claims_and_headers_in_when() {
    let p = policy(
        "default",
        "jwt",
        "targetRefs: [{kind: Service, group: '', name: echo}]
rules:
- from: [{source: {requestPrincipals: ['https://issuer.example/*']}}]
  when:
  - {key: 'request.auth.claims[groups]', values: [admins]}
  - {key: 'request.auth.claims[nested][level]', values: ['3']}
  - {key: 'request.headers[x-env]', notValues: [prod]}",
    );
    let ps = [&p];
    let client = id("default", "client");
    let claims = serde_json::json!({"groups": ["dev", "admins"], "nested": {"level": 3}});
    let a = attrs(&client, Some("https://issuer.example/alice"), Some(&claims));
    let req = SimpleRequest::new("GET", "/").header("x-env", "dev");
    assert!(evaluate(&ps, &a, &req).is_allowed());
    let prod = SimpleRequest::new("GET", "/").header("x-env", "prod");
    assert!(!evaluate(&ps, &a, &prod).is_allowed());
    // No token: requestPrincipals cannot match.
    let anon = attrs(&client, None, None);
    assert!(!evaluate(&ps, &anon, &req).is_allowed());
    let few = serde_json::json!({"groups": ["dev"], "nested": {"level": 3}});
    let a = attrs(&client, Some("https://issuer.example/alice"), Some(&few));
    assert!(!evaluate(&ps, &a, &req).is_allowed());
}

#[test]
fn no_policy_allows_and_an_empty_allow_denies_everything() {
    let client = id("default", "client");
    let a = attrs(&client, None, None);
    assert!(evaluate(&[], &a, &SimpleRequest::new("GET", "/")).is_allowed());
    let none = policy(
        "default",
        "allow-nothing",
        "targetRefs: [{kind: Service, group: '', name: echo}]",
    );
    assert!(!evaluate(&[&none], &a, &SimpleRequest::new("GET", "/")).is_allowed());
}

#[test]
fn audit_policies_are_kept_apart_and_only_reported() {
    let objects = crate::l7::parse_documents(
        "audit.yaml",
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  action: AUDIT
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
",
    )
    .expect("parses");
    let config = crate::l7::build(&objects).expect("AUDIT is accepted");
    assert_eq!(config.policies.len(), 1, "{:?}", config.policies);
    assert_eq!(config.policies[0].name, "deny-post");
    assert_eq!(config.audit_policies.len(), 1);
    let audit: Vec<&Policy> = config.audit_policies.iter().collect();
    let enforced: Vec<&Policy> = config.policies.iter().collect();
    let client = id("default", "client");
    let a = attrs(&client, None, None);
    let admin = SimpleRequest::new("GET", "/admin/x");
    // The audit policy matches /admin but never denies (nor turns into an ALLOW list).
    assert_eq!(audited(&audit, &a, &admin), vec![audit[0].key()]);
    assert!(evaluate(&enforced, &a, &admin).is_allowed());
    assert!(audited(&audit, &a, &SimpleRequest::new("GET", "/ok")).is_empty());
    // Other actions stay as they were: CUSTOM is still refused with a clear reason.
    let custom = crate::l7::parse_documents(
        "custom.yaml",
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec: {action: CUSTOM, provider: {name: ext}}
",
    )
    .expect("parses");
    let errors = crate::l7::build(&custom).expect_err("CUSTOM is refused");
    assert!(errors[0].to_string().contains("CUSTOM"), "{errors:?}");
}
