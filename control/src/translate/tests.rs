//! Translation from YAML fixtures (control/tests/fixtures), through the index as control runs it.

use std::net::IpAddr;

use mesh_api::authz::Action;
use mesh_api::peer_auth::PeerAuthMode;
use mesh_api::{ConfigSnapshot, MtlsMode, Protocol, SnapshotParts, WaypointRef};

use super::Options;
use crate::index::Index;
use crate::objects::parse_documents;

const BASIC: &str = include_str!("../../tests/fixtures/basic.yaml");
const WAYPOINTS: &str = include_str!("../../tests/fixtures/waypoints.yaml");
const POLICIES: &str = include_str!("../../tests/fixtures/policies.yaml");

fn translate(texts: &[&str]) -> (SnapshotParts, Vec<String>) {
    let mut index = Index::new(Options::default());
    let objects = texts
        .iter()
        .flat_map(|t| parse_documents(t).expect("fixture parses"))
        .collect();
    index.replace_all(objects);
    let warnings = index.warnings().map(ToString::to_string).collect();
    (index.snapshot_parts(), warnings)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn wp(s: &str) -> Option<WaypointRef> {
    Some(WaypointRef::new(ip(s)))
}

#[test]
fn pods_become_workloads() {
    let (parts, _) = translate(&[BASIC]);
    let mut names: Vec<&str> = parts.workloads.iter().map(|w| w.name.as_str()).collect();
    names.sort_unstable();
    // Host-network and finished pods are not workloads.
    assert_eq!(names, ["legacy", "web-1", "web-2"]);
    assert_eq!(parts.workloads.len(), 3, "{names:?}");
    let web1 = parts
        .workloads
        .iter()
        .find(|w| w.name == "web-1")
        .expect("web-1");
    assert_eq!(web1.uid, "11111111-aaaa", "the Kubernetes UID is the uid");
    assert_eq!(web1.service_account, "web");
    assert_eq!(web1.node, "node-1");
    assert_eq!(web1.addresses, vec![ip("10.1.0.5")]);
    assert_eq!(
        web1.protocol,
        Protocol::Hbone,
        "annotated by the CNI: enrolled"
    );
    assert_eq!(web1.identity().principal(), "cluster.local/ns/shop/sa/web");
    let legacy = parts
        .workloads
        .iter()
        .find(|w| w.name == "legacy")
        .expect("legacy");
    assert_eq!(legacy.uid, "shop/legacy", "no UID: namespace/name");
    assert_eq!(legacy.protocol, Protocol::Tcp, "not annotated: plain TCP");
    assert_eq!(legacy.service_account, "default");
    ConfigSnapshot::new(parts).expect("a valid snapshot");
}

#[test]
fn services_map_ports_and_pick_ready_endpoints() {
    let (parts, warnings) = translate(&[BASIC]);
    let web = parts
        .services
        .iter()
        .find(|s| s.name == "web")
        .expect("web");
    assert_eq!(web.hostname, "web.shop.svc.cluster.local");
    assert_eq!(web.vips, vec![ip("10.96.0.10")]);
    let ports: Vec<(u16, u16)> = web.ports.iter().map(|p| (p.port, p.target_port)).collect();
    // Named port resolved on the ready endpoint (web-1: 8080); UDP left out; no targetPort = port.
    assert_eq!(ports, [(80, 8080), (9000, 9001), (8443, 8443)]);
    assert_eq!(web.ports[0].app_protocol.as_deref(), Some("http"));
    // web-2 is not ready; legacy has no Ready condition but an IP (ready); the host-network pod is no workload.
    assert_eq!(web.endpoints, ["11111111-aaaa", "shop/legacy"]);
    let headless = parts
        .services
        .iter()
        .find(|s| s.name == "web-headless")
        .expect("headless");
    assert!(headless.vips.is_empty());
    assert_eq!(headless.endpoints, ["11111111-aaaa"]);
    assert!(
        parts.services.iter().all(|s| s.name != "external"),
        "ExternalName is not proxied"
    );
    // Without selector: the slice's ready endpoints that name a pod.
    let manual = parts
        .services
        .iter()
        .find(|s| s.name == "manual")
        .expect("manual");
    assert_eq!(manual.endpoints, ["11111111-aaaa"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn named_port_without_declaring_endpoint_is_left_out_with_a_warning() {
    let text = BASIC.replace("targetPort: http,", "targetPort: grpc,");
    let (parts, warnings) = translate(&[&text]);
    let web = parts
        .services
        .iter()
        .find(|s| s.name == "web")
        .expect("web");
    assert!(web.port(80).is_none());
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Service shop/web") && w.contains("\"grpc\"")),
        "{warnings:?}"
    );
}

#[test]
fn waypoint_precedence_follows_istio() {
    let (parts, warnings) = translate(&[WAYPOINTS]);
    let svc = |n: &str| {
        parts
            .services
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("service {n}"))
    };
    let wl = |n: &str| {
        parts
            .workloads
            .iter()
            .find(|w| w.name == n)
            .unwrap_or_else(|| panic!("workload {n}"))
    };
    // The namespace label applies to services; the ready pod (lowest name among ready) is the address.
    assert_eq!(svc("uses-ns").waypoint, wp("10.1.0.21"));
    // The service's own label wins over the namespace's.
    assert_eq!(svc("uses-own").waypoint, wp("10.2.0.30"));
    // `none` opts out.
    assert_eq!(svc("opted-out").waypoint, None);
    // A workload-only waypoint does not take service traffic.
    assert_eq!(svc("cross-ns").waypoint, None);
    // An unknown waypoint: direct, with a warning.
    assert_eq!(svc("missing").waypoint, None);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Service app/missing") && w.contains("app/nope")),
        "{warnings:?}"
    );
    // The waypoint's own service never uses a waypoint.
    assert_eq!(svc("ns-wp").waypoint, None);
    // ns-wp serves services only: pods labelled only through the namespace get no waypoint.
    assert_eq!(wl("a-1").waypoint, None);
    // The pod's own label to an `all` waypoint.
    assert_eq!(wl("b-1").waypoint, wp("10.2.0.30"));
    // Cross-namespace workload waypoint (its pod's address).
    assert_eq!(wl("d-1").waypoint, wp("10.3.0.40"));
    // Pod opt-out, and a pod that is not enrolled.
    assert_eq!(wl("c-1").waypoint, None);
    assert_eq!(wl("plain").waypoint, None);
    // Waypoint pods are HBONE (they terminate it) and never go through a waypoint.
    for n in ["ns-wp-a", "ns-wp-b", "svc-wp-1", "wl-wp-1"] {
        assert_eq!(wl(n).protocol, Protocol::Hbone, "{n}");
        assert_eq!(wl(n).waypoint, None, "{n}");
    }
    ConfigSnapshot::new(parts.clone()).expect("valid snapshot");
}

#[test]
fn waypoint_without_pods_uses_its_status_address() {
    let text = WAYPOINTS.replace("gateway.networking.k8s.io/gateway-name: wl-wp}", "app: x}");
    let (parts, _) = translate(&[&text]);
    let d1 = parts
        .workloads
        .iter()
        .find(|w| w.name == "d-1")
        .expect("d-1");
    assert_eq!(d1.waypoint, wp("10.3.0.99"));
}

#[test]
fn policies_fail_closed() {
    let (parts, warnings) = translate(&[BASIC, POLICIES]);
    let names: Vec<String> = parts
        .authorization_policies
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(names, ["shop/allow-web", "shop/broken-deny"]);
    let broken = &parts.authorization_policies[1];
    assert_eq!(
        broken.action,
        Action::Allow,
        "replaced by an ALLOW that matches nothing"
    );
    assert!(broken.rules.is_empty());
    assert_eq!(
        broken.selector.as_ref().map(|s| s.match_labels.len()),
        Some(1),
        "same scope as the broken policy"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("broken-deny") && w.contains("deny-all")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("broken-waypoint")),
        "{warnings:?}"
    );
    let odd = parts
        .peer_authentications
        .iter()
        .find(|p| p.name == "odd")
        .expect("odd");
    assert_eq!(odd.mode, PeerAuthMode::Strict);
    let snap = ConfigSnapshot::new(parts.clone()).expect("valid snapshot");
    let web1 = snap.workload("11111111-aaaa").expect("web-1");
    assert_eq!(snap.mtls_mode(web1), MtlsMode::Strict);
    assert_eq!(snap.policies_for(web1).len(), 1);
}
