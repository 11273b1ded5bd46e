//! What a tunnel through the waypoint can carry, end to end: opaque TCP (declared by
//! `appProtocol: tcp`, or sniffed when undeclared), HTTP sniffed on an undeclared port, and the
//! RequestMirror and CORS filters.

use std::time::Duration;

use mesh_testbed::l7::{ECHO_SERVICES, EchoSpec, L7Mesh};

use crate::echo::{hold_connection, wait_established};

fn services() -> String {
    format!(
        "{ECHO_SERVICES}  - {{name: tcp, namespace: default, vips: [10.96.0.20], selector: {{app: tcp}}, waypoint: {{address: WAYPOINT}},
     ports: [{{port: 9000, targetPort: 9000, appProtocol: tcp}}, {{port: 9001, targetPort: 9000}}]}}
  - {{name: plain, namespace: default, vips: [10.96.0.21], selector: {{app: echo, version: v1}}, waypoint: {{address: WAYPOINT}},
     ports: [{{port: 81, targetPort: 8080}}]}}
"
    )
}

const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: plain, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: plain}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-routed, value: plain}]}}]
    backendRefs: [{name: plain, port: 81}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ['https://app.example'], allowMethods: [GET, POST], allowHeaders: [x-token], maxAge: 60}
    backendRefs: [{name: echo-v1, port: 80}]
";

#[test]
fn tcp_sniffing_mirror_and_cors() {
    let backends = vec![
        EchoSpec::new("echo-v1-aaa-bbb", "echo", "v1"),
        EchoSpec::new("echo-v2-ccc-ddd", "echo", "v2"),
    ];
    let m = L7Mesh::start("wpproto", &backends, &services()).unwrap();
    m.waypoint.apply_routes("routes.yaml", ROUTES).unwrap();

    // HTTP on a port without appProtocol: sniffed, and the route applies.
    let r = m.curl("http://10.96.0.21:81/x", &[]).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, m.waypoint.logs());
    assert_eq!(r.header("x-routed"), Some("plain"));

    // Mirror: the answer comes from v1, and a copy reaches v2 (its ztunnel sees the waypoint's
    // connection).
    let before = inbound_to(&m, "echo-v2-ccc-ddd");
    for _ in 0..3 {
        let r = m.curl("http://10.96.0.10/mirror", &[]).unwrap();
        assert!(r.pod().starts_with("echo-v1"), "{}", r.body);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inbound_to(&m, "echo-v2-ccc-ddd") <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no mirrored traffic reached v2\n{}",
            m.waypoint.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // CORS: the preflight is answered by the waypoint; actual requests get the allow header.
    let pre = m
        .curl(
            "http://10.96.0.10/cors",
            &[
                "-X",
                "OPTIONS",
                "-H",
                "Origin: https://app.example",
                "-H",
                "Access-Control-Request-Method: POST",
            ],
        )
        .unwrap();
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        pre.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(pre.header("access-control-max-age"), Some("60"));
    assert!(pre.pod().is_empty(), "the preflight is not forwarded");
    let get = m
        .curl(
            "http://10.96.0.10/cors",
            &["-H", "Origin: https://app.example"],
        )
        .unwrap();
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = m
        .curl(
            "http://10.96.0.10/cors",
            &["-H", "Origin: https://evil.example"],
        )
        .unwrap();
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// Connections node 2's ztunnel has opened to `pod` so far (from its metrics).
fn inbound_to(m: &L7Mesh, pod: &str) -> u64 {
    let text = m.mesh.node(2).metrics().unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains(&format!("destination_workload=\"{pod}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn opaque_tcp_through_the_waypoint() {
    let backends = vec![EchoSpec::new("tcp-eee-fff", "tcp", "v1").tcp_port(9000)];
    let m = L7Mesh::start("wptcp", &backends, &services()).unwrap();
    let send = |port: u16, data: &str| {
        let out = m
            .client()
            .netns
            .run_timeout(
                mesh_testbed::bin_path("mesh-testapp"),
                &[
                    "send",
                    "--to",
                    &format!("10.96.0.20:{port}"),
                    "--data",
                    data,
                    "--timeout-ms",
                    "5000",
                ],
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(out.success(), "{}\n{}", out.stderr, m.waypoint.logs());
        out.stdout
    };
    // Declared TCP: relayed as bytes, banner first.
    let reply = send(9000, "ping-declared");
    assert!(reply.contains("hello from tcp-eee-fff"), "{reply}");
    assert!(reply.contains("ping-declared"), "{reply}");
    // Undeclared port: the client's first bytes are not HTTP, so it is sniffed as TCP.
    let reply = send(9001, "ping-sniffed");
    assert!(
        reply.contains("hello from tcp-eee-fff") && reply.contains("ping-sniffed"),
        "{reply}"
    );
    let logs = m
        .waypoint
        .logs_when(|l| l.matches("protocol=\"tcp\"").count() >= 2);
    assert_eq!(
        logs.matches("protocol=\"tcp\"").count(),
        2,
        "two TCP access records:\n{logs}"
    );
    // Each record names the client, the address it dialled and the endpoint it reached, as
    // ip:port (what the address formatter writes).
    let client = format!("src.addr={}:", m.client().ip);
    for port in [9000, 9001] {
        let record = logs
            .lines()
            .find(|l| {
                l.contains("protocol=\"tcp\"") && l.contains(&format!("dst.addr=10.96.0.20:{port}"))
            })
            .unwrap_or_else(|| panic!("no TCP record for port {port}:\n{logs}"));
        assert!(record.contains(&client), "{record}");
        assert!(
            record.contains("upstream=10.") && record.contains(":9000 "),
            "{record}"
        );
    }
    let metrics = m.waypoint.metrics();
    let opened = metrics
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("destination_workload=\"tcp-eee-fff\"")
        })
        .unwrap_or_else(|| panic!("no TCP metrics:\n{metrics}"));
    assert_backend_sees_the_client(&m);
    assert!(
        opened.contains("reporter=\"waypoint\"") && opened.ends_with(" 2"),
        "{opened}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_received_bytes_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Through the waypoint too, the backend app sees the client pod's address: the waypoint names
/// the client in the upstream tunnel's `forwarded`, and the backend's ztunnel, which takes that
/// header from the workload's waypoint only, connects to the app from it.
fn assert_backend_sees_the_client(m: &L7Mesh) {
    let backend = m.mesh.pod_named("tcp-eee-fff").expect("backend pod");
    let _held = hold_connection(m.client(), "10.96.0.20:9000".parse().expect("VIP"));
    let seen = wait_established(backend, &["sport", "=", ":9000"])
        .unwrap_or_else(|| panic!("no connection reached the backend\n{}", m.waypoint.logs()));
    let peer = seen.split_whitespace().nth(3).unwrap_or_default();
    assert!(
        peer.starts_with(&format!("{}:", m.client().ip)),
        "the backend's peer is {peer}, not the client {}: {seen:?}",
        m.client().ip
    );
}
