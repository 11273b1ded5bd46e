//! Snapshot validation, indexes and policy scoping.

use super::*;
use crate::authz::AuthorizationPolicyResource;
use crate::model::{Protocol, ServicePort, WaypointRef};
use crate::peer_auth::PeerAuthenticationResource;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn wl(ns: &str, name: &str, addr: &str, labels: &[(&str, &str)]) -> Workload {
    Workload {
        uid: format!("{ns}/{name}"),
        name: name.into(),
        namespace: ns.into(),
        service_account: name.into(),
        node: "node-1".into(),
        addresses: vec![ip(addr)],
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        protocol: Protocol::Hbone,
        ..Default::default()
    }
}

fn svc(ns: &str, name: &str, vip: &str, endpoints: &[&str]) -> Service {
    Service {
        name: name.into(),
        namespace: ns.into(),
        hostname: crate::model::service_hostname(name, ns),
        vips: vec![ip(vip)],
        ports: vec![ServicePort {
            port: 80,
            target_port: 8080,
            app_protocol: None,
        }],
        endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
        waypoint: None,
    }
}

fn policy(yaml: &str) -> Policy {
    let r: AuthorizationPolicyResource = serde_yaml_ng::from_str(yaml).expect("yaml");
    Policy::try_from(r).expect("valid policy")
}

fn parts() -> SnapshotParts {
    SnapshotParts {
        root_namespace: String::new(),
        workloads: vec![
            wl("default", "client", "10.1.1.2", &[("app", "client")]),
            wl("default", "echo-1", "10.1.1.3", &[("app", "echo")]),
            wl("default", "echo-2", "10.2.1.3", &[("app", "echo")]),
            wl("prod", "echo", "10.2.1.4", &[("app", "echo")]),
        ],
        services: vec![
            svc(
                "default",
                "echo",
                "10.96.0.10",
                &["default/echo-1", "default/echo-2"],
            ),
            svc("default", "echo-v1", "10.96.0.11", &["default/echo-1"]),
        ],
        authorization_policies: vec![
            policy(
                "{name: global, namespace: istio-system, action: DENY, rules: [{to: [{operation: {ports: ['1']}}]}]}",
            ),
            policy(
                "{name: root-echo, namespace: istio-system, selector: {matchLabels: {app: echo}}}",
            ),
            policy("{name: ns-wide, namespace: default, rules: [{}]}"),
            policy("{name: echo-only, namespace: default, selector: {matchLabels: {app: echo}}}"),
            policy("{name: waypoint, namespace: default, targetRefs: [{kind: Gateway, name: wp}]}"),
            policy("{name: prod-wide, namespace: prod}"),
        ],
        peer_authentications: vec![],
    }
}

fn snapshot() -> ConfigSnapshot {
    ConfigSnapshot::new(parts()).expect("valid")
}

fn names(ps: Vec<&Policy>) -> Vec<&str> {
    ps.into_iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn lookups_by_ip_uid_and_vip() {
    let s = snapshot();
    assert_eq!(s.root_namespace(), "istio-system");
    assert_eq!(
        s.workload_by_ip(ip("10.1.1.3")).map(|w| w.name.as_str()),
        Some("echo-1")
    );
    assert_eq!(
        s.workload_by_ip(ip("::ffff:10.1.1.3"))
            .map(|w| w.name.as_str()),
        Some("echo-1")
    );
    assert!(s.workload_by_ip(ip("10.9.9.9")).is_none());
    assert_eq!(
        s.workload("prod/echo").map(|w| w.addresses[0]),
        Some(ip("10.2.1.4"))
    );
    assert!(s.workload("prod/nope").is_none());
    let echo = s.service_by_vip(ip("10.96.0.10")).expect("service");
    assert_eq!(echo.hostname, "echo.default.svc.cluster.local");
    let eps: Vec<&str> = s.service_endpoints(echo).map(|w| w.name.as_str()).collect();
    assert_eq!(eps, ["echo-1", "echo-2"]);
    assert!(s.service_by_vip(ip("10.1.1.3")).is_none());
    let of: Vec<&str> = s
        .services_for_workload("default/echo-1")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(of, ["echo", "echo-v1"]);
    assert_eq!(s.services_for_workload("default/client").count(), 0);
    assert_eq!(s.services_for_workload("unknown").count(), 0);
    assert_eq!(
        (
            s.workloads().count(),
            s.services().count(),
            s.policies().count()
        ),
        (4, 2, 6)
    );
}

#[test]
fn policy_scope_selection() {
    let s = snapshot();
    let w = |uid: &str| s.workload(uid).expect("workload").clone();
    assert_eq!(
        names(s.policies_for(&w("default/client"))),
        ["global", "ns-wide"]
    );
    assert_eq!(
        names(s.policies_for(&w("default/echo-1"))),
        ["global", "root-echo", "ns-wide", "echo-only"]
    );
    assert_eq!(
        names(s.policies_for(&w("prod/echo"))),
        ["global", "root-echo", "prod-wide"]
    );
    // A workload in the root namespace gets root policies once.
    let mut parts = parts();
    parts
        .workloads
        .push(wl("istio-system", "gw", "10.3.0.1", &[("app", "echo")]));
    let s = ConfigSnapshot::new(parts).expect("valid");
    let gw = s.workload("istio-system/gw").expect("gw").clone();
    assert_eq!(names(s.policies_for(&gw)), ["global", "root-echo"]);
}

#[test]
fn custom_root_namespace() {
    let mut p = parts();
    p.root_namespace = "mesh-root".into();
    p.authorization_policies
        .push(policy("{name: g2, namespace: mesh-root}"));
    let s = ConfigSnapshot::new(p).expect("valid");
    let client = s.workload("default/client").expect("client").clone();
    // istio-system is now an ordinary namespace whose policies do not reach default.
    assert_eq!(names(s.policies_for(&client)), ["g2", "ns-wide"]);
}

#[test]
fn mtls_mode_uses_peer_authentications() {
    let mut p = parts();
    let pa = |y: &str| {
        let r: PeerAuthenticationResource = serde_yaml_ng::from_str(y).expect("yaml");
        PeerAuthentication::try_from(r).expect("valid")
    };
    p.peer_authentications = vec![
        pa("{name: strict, namespace: default, mtls: {mode: STRICT}}"),
        pa(
            "{name: echo, namespace: default, selector: {matchLabels: {app: echo}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {9000: {mode: STRICT}}}",
        ),
    ];
    let s = ConfigSnapshot::new(p).expect("valid");
    let w = |uid: &str| s.workload(uid).expect("workload").clone();
    assert_eq!(s.mtls_mode(&w("default/client")), MtlsMode::Strict);
    assert_eq!(s.mtls_mode(&w("default/echo-1")), MtlsMode::Permissive);
    assert_eq!(
        s.mtls_mode_for_port(&w("default/echo-1"), 9000),
        MtlsMode::Strict
    );
    assert_eq!(s.mtls_mode(&w("prod/echo")), MtlsMode::Permissive);
}

#[test]
fn inconsistent_configs_are_rejected_with_paths() {
    type Case = (fn(&mut SnapshotParts), &'static str);
    let cases: Vec<Case> = vec![
        (
            |p| p.workloads[1].uid = "default/client".into(),
            "workloads[1]: uid \"default/client\" is already used by workloads[0]",
        ),
        (
            |p| p.workloads[2].addresses = vec![ip("10.1.1.2")],
            "workloads[2].addresses[0]: address 10.1.1.2 is already used by workloads[0]",
        ),
        (
            |p| p.workloads[0].name = "Client".into(),
            "workloads[0].name",
        ),
        (
            |p| p.services[1].vips = vec![ip("10.96.0.10")],
            "services[1]: VIP 10.96.0.10 is already used by services[0]",
        ),
        (
            |p| p.services[1].vips = vec![ip("10.1.1.3")],
            "services[1].vips[0]: address 10.1.1.3 is already used by workloads[1]",
        ),
        (
            |p| p.services[1].endpoints.push("default/ghost".into()),
            "services[1].endpoints[1]: no workload has uid \"default/ghost\"",
        ),
        (
            |p| p.services[1].endpoints.push("default/echo-1".into()),
            "services[1].endpoints[1]: uid \"default/echo-1\" is listed twice",
        ),
        (|p| p.services[1].name = "echo".into(), "services[1]"),
        (
            |p| p.services.push(p.services[0].clone()),
            "services[2]: service echo.default.svc.cluster.local is already used by services[0]",
        ),
        (
            |p| {
                p.authorization_policies
                    .push(p.authorization_policies[2].clone())
            },
            "authorizationPolicies[6]: AuthorizationPolicy default/ns-wide is already used by authorizationPolicies[2]",
        ),
        (|p| p.root_namespace = "Root".into(), "rootNamespace"),
    ];
    for (mutate, expected) in cases {
        let mut p = parts();
        mutate(&mut p);
        let err = ConfigSnapshot::new(p).expect_err(expected).to_string();
        assert!(err.contains(expected), "got: {err}\nexpected: {expected}");
    }
}

#[test]
fn json_round_trip_and_default() {
    let mut p = parts();
    p.workloads[0].waypoint = Some(WaypointRef::new(ip("10.1.1.9")));
    let s = ConfigSnapshot::new(p).expect("valid");
    let json = serde_json::to_value(&s).expect("serialize");
    assert_eq!(json["rootNamespace"], "istio-system");
    assert_eq!(json["workloads"][0]["serviceAccount"], "client");
    assert_eq!(json["workloads"][0]["protocol"], "HBONE");
    assert_eq!(json["workloads"][0]["waypoint"]["port"], 15008);
    assert_eq!(json["services"][0]["ports"][0]["targetPort"], 8080);
    assert_eq!(json["authorizationPolicies"][0]["action"], "DENY");
    let back: ConfigSnapshot = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, s);
    let empty = ConfigSnapshot::default();
    assert_eq!(empty.root_namespace(), "istio-system");
    assert_eq!(empty.workloads().count(), 0);
    // Deserializing validates too.
    let mut bad = serde_json::to_value(&s).expect("serialize");
    bad["services"][0]["endpoints"][0] = "nobody".into();
    assert!(serde_json::from_value::<ConfigSnapshot>(bad).is_err());
}
