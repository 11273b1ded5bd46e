use std::sync::Arc;

use http::HeaderMap;

use super::*;

const CONFIG: &str = r#"
workloads:
  - {name: client, namespace: default, serviceAccount: client, addresses: [10.1.0.2]}
  - {name: waypoint, namespace: default, serviceAccount: waypoint, addresses: [10.2.0.50]}
  - {name: other-waypoint, namespace: other, serviceAccount: waypoint, addresses: [10.3.0.50]}
  - {name: echo, namespace: default, serviceAccount: echo, addresses: [10.2.0.2], labels: {app: echo}}
  - {name: behind, namespace: default, serviceAccount: behind, addresses: [10.2.0.60], waypoint: {address: 10.2.0.50}}
  - {name: plain, namespace: default, serviceAccount: plain, addresses: [10.2.0.70], labels: {app: plain}}
services:
  - {name: echo, namespace: default, vips: [10.96.0.10], ports: [{port: 80, targetPort: 8080}], selector: {app: echo}, waypoint: {address: 10.2.0.50}}
  - {name: plain, namespace: default, vips: [10.96.0.11], ports: [{port: 80}], selector: {app: plain}}
"#;

fn snap() -> ConfigSnapshot {
    mesh_api::file::parse(CONFIG).expect("test config is valid")
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa)
}

fn request(peer: (&str, SpiffeId), forwarded: Option<&str>) -> hbone::ConnectRequest {
    hbone::ConnectRequest {
        authority: "10.2.0.2:8080".parse().expect("authority"),
        forwarded_for: forwarded.map(|f| f.parse().expect("forwarded")),
        traceparent: None,
        baggage: None,
        conn: Arc::new(hbone::ConnInfo {
            peer_identity: peer.1,
            peer_addr: peer.0.parse().expect("peer"),
            local_addr: "10.2.0.2:15008".parse().expect("local"),
        }),
        headers: HeaderMap::new(),
    }
}

/// The client an inbound tunnel to `workload` presents to the app.
fn client_for(workload: &str, req: &hbone::ConnectRequest) -> IpAddr {
    let snap = snap();
    let w = snap
        .workloads()
        .find(|w| w.name == workload)
        .expect("workload");
    original_client(&snap, Some(w), req)
}

#[test]
fn a_client_pod_is_seen_at_its_own_address_whatever_it_claims() {
    let honest = request(
        ("10.1.0.2:40000", id("default", "client")),
        Some("10.1.0.2:1234"),
    );
    assert_eq!(
        client_for("echo", &honest),
        "10.1.0.2".parse::<IpAddr>().expect("ip")
    );
    let forged = request(
        ("10.1.0.2:40000", id("default", "client")),
        Some("10.9.9.9:1"),
    );
    assert_eq!(
        client_for("echo", &forged),
        "10.1.0.2".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn the_destinations_waypoint_is_believed_for_service_and_workload_bindings() {
    let via = request(
        ("10.2.0.50:40000", id("default", "waypoint")),
        Some("10.1.0.2:1234"),
    );
    // echo: bound through its service; behind: bound itself.
    assert_eq!(
        client_for("echo", &via),
        "10.1.0.2".parse::<IpAddr>().expect("ip")
    );
    assert_eq!(
        client_for("behind", &via),
        "10.1.0.2".parse::<IpAddr>().expect("ip")
    );
    // Without a forwarded header the waypoint itself is the client.
    let bare = request(("10.2.0.50:40000", id("default", "waypoint")), None);
    assert_eq!(
        client_for("echo", &bare),
        "10.2.0.50".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn a_waypoint_that_is_not_the_destinations_is_not_believed() {
    // A waypoint, but of another namespace and not bound to `plain` or `echo`.
    let other = request(
        ("10.3.0.50:40000", id("other", "waypoint")),
        Some("10.1.0.2:1234"),
    );
    assert_eq!(
        client_for("echo", &other),
        "10.3.0.50".parse::<IpAddr>().expect("ip")
    );
    // The right waypoint, but `plain` is not bound to it.
    let unbound = request(
        ("10.2.0.50:40000", id("default", "waypoint")),
        Some("10.1.0.2:1234"),
    );
    assert_eq!(
        client_for("plain", &unbound),
        "10.2.0.50".parse::<IpAddr>().expect("ip")
    );
    // The waypoint's address with another identity.
    let impostor = request(
        ("10.2.0.50:40000", id("default", "client")),
        Some("10.9.9.9:1"),
    );
    assert_eq!(
        client_for("echo", &impostor),
        "10.2.0.50".parse::<IpAddr>().expect("ip")
    );
}
