//! The local config file: the README example, defaults, and rejection of bad input.

use super::*;
use crate::authz::{ConnAttrs, evaluate};
use crate::model::MtlsMode;

/// The first ```yaml block of the crate README: the documented example must stay valid.
fn readme_example() -> &'static str {
    let readme = include_str!("../../README.md");
    let start = readme.find("```yaml\n").expect("README has a yaml block") + "```yaml\n".len();
    let len = readme[start..].find("```").expect("yaml block is closed");
    &readme[start..start + len]
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn readme_example_parses_and_means_what_it_says() {
    let snap = parse(readme_example()).unwrap_or_else(|e| panic!("README example rejected: {e}"));
    let client = snap
        .workload("default/client-1")
        .expect("client-1 with default uid");
    assert_eq!(client.addresses, vec![ip("10.1.1.2")]);
    assert_eq!(client.waypoint.map(|w| w.port), Some(15008));
    let echo = snap.service_by_vip(ip("10.96.0.10")).expect("echo service");
    assert_eq!(echo.hostname, "echo.default.svc.cluster.local");
    let eps: Vec<&str> = snap
        .service_endpoints(echo)
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(eps, ["echo-1"]);
    let echo_1 = snap.workload_by_ip(ip("10.1.2.3")).expect("echo-1");
    assert_eq!(snap.mtls_mode(echo_1), MtlsMode::Strict);
    assert_eq!(snap.mtls_mode(client), MtlsMode::Permissive);
    let policies = snap.policies_for(echo_1);
    let conn = |sa: &str, port| ConnAttrs {
        src_identity: Some(crate::PeerIdentity::new("cluster.local", "default", sa)),
        src_ip: ip("10.1.1.2"),
        dst_ip: ip("10.1.2.3"),
        dst_port: port,
    };
    assert!(evaluate(&policies, &conn("client", 8080)).is_allowed());
    assert!(!evaluate(&policies, &conn("client", 9000)).is_allowed());
    assert!(!evaluate(&policies, &conn("intruder", 8080)).is_allowed());
}

#[test]
fn defaults_are_applied() {
    let snap = parse(
        "workloads:\n  - {name: a, addresses: [10.0.0.1]}\n\
         services:\n  - {name: s, vips: [10.96.0.1], ports: [{port: 80}], endpoints: [default/a]}\n",
    )
    .expect("valid");
    let a = snap.workload("default/a").expect("uid default");
    assert_eq!(
        (
            a.namespace.as_str(),
            a.service_account.as_str(),
            a.trust_domain.as_str(),
            a.protocol
        ),
        ("default", "default", "cluster.local", Protocol::Hbone)
    );
    let s = snap.service_by_vip(ip("10.96.0.1")).expect("service");
    assert_eq!(s.ports[0].target_port, 80);
    assert_eq!(s.endpoints, ["default/a"]);
    assert_eq!(snap.root_namespace(), "istio-system");
    assert_eq!(
        parse("")
            .expect("empty file is an empty config")
            .workloads()
            .count(),
        0
    );
}

#[test]
fn selector_picks_workloads_of_the_same_namespace_only() {
    let snap = parse(
        "workloads:\n\
         - {name: a, labels: {app: x}, addresses: [10.0.0.1]}\n\
         - {name: b, namespace: other, labels: {app: x}, addresses: [10.0.0.2]}\n\
         - {name: c, labels: {app: y}, addresses: [10.0.0.3], uid: custom-uid, protocol: TCP}\n\
         services:\n\
         - {name: s, selector: {app: x}, vips: [10.96.0.1], endpoints: [custom-uid, default/a]}\n",
    )
    .expect("valid");
    let s = snap.service_by_vip(ip("10.96.0.1")).expect("service");
    assert_eq!(s.endpoints, ["default/a", "custom-uid"]);
    assert_eq!(
        snap.workload("custom-uid").map(|w| w.protocol),
        Some(Protocol::Tcp)
    );
}

#[test]
fn bad_files_are_rejected_with_the_field_path() {
    let table: &[(&str, &str)] = &[
        ("workloads: [{name: a, bogus: 1}]", "unknown field `bogus`"),
        ("nonsense: 1", "unknown field `nonsense`"),
        (
            "workloads: [{name: a, addresses: [10.0.0.300]}]",
            "workloads[0].addresses[0]",
        ),
        (
            "workloads: [{name: a, protocol: UDP}]",
            "workloads[0].protocol",
        ),
        (
            "workloads: [{name: a, waypoint: {address: 10.0.0.9, port: 70000}}]",
            "workloads[0].waypoint.port",
        ),
        (
            "workloads: [{name: a, labels: {'a b': c}}]",
            "workloads[0].labels.a b",
        ),
        (
            "workloads: [{name: a, serviceAccount: 'Bad SA'}]",
            "workloads[0].serviceAccount",
        ),
        (
            "workloads: [{name: a, trustDomain: 'x/y'}]",
            "workloads[0].trustDomain",
        ),
        (
            "workloads: [{name: a}, {name: a}]",
            "workloads[1]: uid \"default/a\" is already used by workloads[0]",
        ),
        (
            "services: [{name: s, ports: [{port: 0}]}]",
            "services[0].ports[0].port",
        ),
        (
            "services: [{name: s, selector: {'-x': y}}]",
            "services[0].selector.-x",
        ),
        (
            "services: [{name: s, endpoints: [ghost]}]",
            "services[0].endpoints[0]: no workload has uid \"ghost\"",
        ),
        (
            "authorizationPolicies: [{name: p, namespace: default, action: AUDIT}]",
            "authorizationPolicies[0] (default/p): action: AUDIT is not supported",
        ),
        (
            "authorizationPolicies: [{name: p, namespace: default, rules: [{to: [{operation: {ports: [x]}}]}]}]",
            "authorizationPolicies[0] (default/p): rules[0].to[0].operation.ports[0]",
        ),
        (
            "peerAuthentications: [{name: p, namespace: default, mtls: {mode: STRICT}, portLevelMtls: {80: {mode: STRICT}}}]",
            "peerAuthentications[0] (default/p): portLevelMtls",
        ),
        (
            "peerAuthentications: [{name: p, namespace: default, mtls: {mode: OFF}}]",
            "peerAuthentications[0].mtls.mode",
        ),
        (
            "workloads: [{name: a, addresses: [10.0.0.1]}]\nservices: [{name: s, vips: [10.0.0.1]}]",
            "services[0].vips[0]: address 10.0.0.1 is already used by workloads[0]",
        ),
        ("workloads: {name: a}", "workloads: invalid type"),
        ("workloads: [{name: a", "line 1"),
        ("- 1", "expected struct ConfigFile"),
    ];
    for (yaml, expected) in table {
        let err = parse(yaml).expect_err(yaml).to_string();
        assert!(
            err.contains(expected),
            "{yaml}\n  error: {err}\n  expected: {expected}"
        );
    }
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, readme_example()).expect("write");
    assert!(
        load(&path)
            .expect("valid")
            .workload("default/client-1")
            .is_some()
    );
    let missing = dir.path().join("missing.yaml");
    let err = load(&missing).expect_err("missing file");
    assert!(matches!(err, FileError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}
