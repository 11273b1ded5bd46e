#![allow(clippy::unwrap_used)]
//! `meshctl explain` over the YAML fixture `fixtures/explain.yaml`: allowed by an ALLOW policy,
//! denied by a DENY policy, no ALLOW matched, the waypoint path, passthrough, plaintext to a
//! STRICT workload, an unknown pod; text and JSON output; `--config` with a saved config dump.

use std::collections::HashMap;
use std::path::PathBuf;

use mesh_api::ConfigSnapshot;
use meshctl::explain::path::Configs;
use meshctl::explain::{self, Explanation};

fn fixture() -> ConfigSnapshot {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain.yaml");
    explain::load_config_file(&p).unwrap()
}

fn run(cfg: &ConfigSnapshot, pod: &str, dest: &str) -> Result<Explanation, explain::ExplainError> {
    let by_node = HashMap::new();
    let configs = Configs {
        main: cfg,
        by_node: &by_node,
    };
    let (ns, name) = explain::parse_pod(pod).unwrap();
    let (host, port) = explain::parse_destination(dest).unwrap();
    explain::explain(&configs, "fixture", (&ns, &name), (&host, port))
}

#[test]
fn allowed_by_an_allow_policy_names_it_and_maps_the_service_port() {
    let cfg = fixture();
    let e = run(&cfg, "shop/client", "web:80").unwrap();
    assert_eq!(e.verdict, "allow", "{}", e.text());
    assert_eq!(e.source.node, "node-1");
    assert_eq!(
        e.source.identity.as_deref(),
        Some("cluster.local/ns/shop/sa/client")
    );
    assert_eq!(e.destination.kind, "service");
    assert_eq!(e.destination.name.as_deref(), Some("shop/web"));
    assert_eq!(e.destination.target_port, Some(8080));
    assert!(e.waypoint.is_none());
    let ep = &e.endpoints[0];
    assert_eq!(
        (ep.pod.as_str(), ep.address.as_str(), ep.node.as_str()),
        ("shop/web-1", "10.2.0.5:8080", "node-2")
    );
    assert_eq!(ep.mtls_mode, "PERMISSIVE");
    assert_eq!(ep.reason, "allowed by ALLOW policy shop/web-allow-client");
    assert!(
        ep.policies
            .iter()
            .any(|p| p.name == "shop/web-allow-client" && p.matches)
    );
    let text = e.text();
    assert!(
        text.contains("VERDICT:     ALLOW") && text.contains("port 80 -> target port 8080"),
        "{text}"
    );
}

#[test]
fn denied_by_a_deny_policy_names_the_policy_and_the_strict_mode() {
    let cfg = fixture();
    let e = run(&cfg, "shop/client", "db.shop.svc.cluster.local:5432").unwrap();
    assert_eq!(e.verdict, "deny", "{}", e.text());
    assert_eq!(
        e.endpoints[0].reason,
        "denied by DENY policy shop/db-deny-client"
    );
    assert_eq!(e.endpoints[0].mtls_mode, "STRICT");
    assert!(e.summary.contains("shop/db-deny-client"), "{}", e.summary);
}

#[test]
fn no_allow_policy_matched_lists_the_policies_tried() {
    let cfg = fixture();
    let e = run(&cfg, "shop/client", "10.96.0.12:80").unwrap();
    assert_eq!(e.verdict, "deny");
    assert_eq!(
        e.endpoints[0].reason,
        "no ALLOW policy matched (tried shop/admin-only-ops)"
    );
    // The workload's own address, the same decision.
    let e = run(&cfg, "shop/client", "10.2.0.7:8080").unwrap();
    assert_eq!(e.destination.kind, "workload");
    assert_eq!(e.verdict, "deny");
}

#[test]
fn a_waypoint_bound_service_goes_through_the_waypoint_then_its_identity_is_checked() {
    let cfg = fixture();
    let e = run(&cfg, "shop/client", "reviews.shop:9080").unwrap();
    let text = e.text();
    let wp = e.waypoint.as_ref().unwrap();
    assert_eq!(wp.name, "shop/waypoint");
    assert_eq!(wp.bound_to, "service");
    assert_eq!(wp.address, "10.1.0.9:15008");
    assert_eq!(wp.verdict, "allow", "{text}");
    assert!(wp.reason.contains("shop/reviews-get-only"), "{text}");
    let ep = &e.endpoints[0];
    assert!(
        ep.connection.contains("cluster.local/ns/shop/sa/waypoint"),
        "{text}"
    );
    assert_eq!(
        ep.reason,
        "allowed by ALLOW policy shop/reviews-from-waypoint"
    );
    assert_eq!(e.verdict, "allow");
    // The pod outside the mesh is not captured: no waypoint, plaintext to the endpoint.
    let e = run(&cfg, "shop/legacy", "reviews:9080").unwrap();
    assert!(e.waypoint.is_none());
    assert!(e.endpoints[0].connection.starts_with("plaintext"));
    assert_eq!(e.verdict, "deny", "{}", e.text());
}

#[test]
fn destinations_outside_the_mesh_are_passthrough() {
    let cfg = fixture();
    for dest in ["93.184.216.34:443", "example.com:443", "[2001:db8::1]:80"] {
        let e = run(&cfg, "shop/client", dest).unwrap();
        assert_eq!(e.verdict, "passthrough", "{dest}: {}", e.text());
        assert_eq!(e.destination.kind, "outside-mesh");
        assert!(e.endpoints.is_empty());
    }
}

#[test]
fn plaintext_to_a_strict_workload_is_refused_by_peer_authentication() {
    let cfg = fixture();
    let e = run(&cfg, "shop/legacy", "db:5432").unwrap();
    assert!(e.source.identity.is_none());
    assert_eq!(e.verdict, "deny");
    assert!(e.endpoints[0].reason.contains("STRICT"), "{}", e.text());
}

#[test]
fn unknown_pods_and_bad_arguments_are_clear_errors() {
    let cfg = fixture();
    let err = run(&cfg, "shop/ghost", "web:80").unwrap_err().to_string();
    assert!(
        err.contains("no pod shop/ghost") && err.contains("client, legacy"),
        "{err}"
    );
    let err = run(&cfg, "empty/ghost", "web:80").unwrap_err().to_string();
    assert!(err.contains("no pods in namespace empty"), "{err}");
    assert!(explain::parse_pod("client").is_err());
    assert!(explain::parse_destination("web").is_err());
    assert!(explain::parse_destination("web:0").is_err());
    assert!(explain::parse_destination("2001:db8::1:80").is_err());
    let e = run(&cfg, "shop/client", "db:9999").unwrap();
    assert_eq!(e.verdict, "deny");
    assert!(e.summary.contains("has no port 9999"), "{}", e.summary);
}

#[test]
fn json_output_and_a_saved_config_dump_give_the_same_answer() {
    let cfg = fixture();
    let e = run(&cfg, "shop/client", "db:5432").unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["endpoints"][0]["mtlsMode"], "STRICT");
    assert_eq!(v["destination"]["kind"], "service");

    // A dump as `meshctl ztunnel config <node> -o json` saves it.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.json");
    let json = serde_json::json!({"version": 7, "config": cfg, "pods": [], "certificates": []});
    std::fs::write(&dump, json.to_string()).unwrap();
    let from_dump = explain::load_config_file(&dump).unwrap();
    let again = run(&from_dump, "shop/client", "db:5432").unwrap();
    assert_eq!(again, e);
    // A broken file is a clear error naming it.
    std::fs::write(&dump, "workloads: [{name: 1}").unwrap();
    let err = explain::load_config_file(&dump).unwrap_err().to_string();
    assert!(err.contains("dump.json"), "{err}");
}
