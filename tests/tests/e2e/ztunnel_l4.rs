//! End-to-end tests of ztunnel in network namespaces: two nodes, real ztunnel processes, real redirect rules,
//! pods handed over through the real handoff protocol, traffic from real clients inside pods.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use mesh_testbed::mesh::{Mesh, MeshBuilder, PodSpec};
use mesh_testbed::{Capture, Pod};

use crate::echo::{established, hold_connection, send, serve, wait_established};

const ECHO_PORT: u16 = 8080;

fn addr(pod: &Pod, port: u16) -> SocketAddr {
    SocketAddr::new(pod.ip.into(), port)
}

fn logs(mesh: &Mesh) -> String {
    format!(
        "--- ztunnel node-1:\n{}\n--- ztunnel node-2:\n{}",
        mesh.node(1).ztunnel().stdout(),
        mesh.node(2).ztunnel().stdout()
    )
}

#[test]
fn pod_to_pod_across_nodes_is_mtls_and_never_plaintext() {
    let mut b = MeshBuilder::new("l4x", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    let mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));

    let node1 = &mesh.topology().nodes()[0];
    let capture = Capture::node_fabric(node1).expect("start capture");
    let marker = "MARKER-plaintext-must-not-cross-the-wire-4711";
    let reply = send(mesh.pod(client), addr(mesh.pod(server), ECHO_PORT), marker)
        .unwrap_or_else(|e| panic!("send failed: {e}\n{}", logs(&mesh)));
    let summary = capture.stop().expect("stop capture");

    assert!(
        reply.contains("hello from server"),
        "banner of the server pod: {reply}"
    );
    assert!(reply.contains(marker), "echoed payload: {reply}");
    assert!(
        !summary.contains(marker.as_bytes()),
        "the marker crossed the node link in plaintext"
    );
    assert!(
        summary.ports().contains(&15008),
        "traffic between nodes went to HBONE port 15008: {summary:?}"
    );
    assert!(
        !summary.ports().contains(&ECHO_PORT),
        "no direct traffic to the app port between nodes"
    );

    // The destination ztunnel saw the client's verified identity.
    let metrics = mesh.node(2).metrics().unwrap();
    let inbound = metrics
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("reporter=\"destination\"")
        })
        .unwrap_or_else(|| panic!("no inbound connection metric:\n{metrics}"));
    assert!(
        inbound.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/client\""),
        "{inbound}"
    );
    assert!(
        inbound.contains("connection_security_policy=\"mutual_tls\""),
        "{inbound}"
    );
    assert!(
        inbound.contains("destination_workload=\"server\""),
        "{inbound}"
    );
    // And logged it in the access log.
    let log2 = mesh
        .node(2)
        .ztunnel()
        .stdout_containing("spiffe://cluster.local/ns/default/sa/client");
    assert!(
        log2.contains("spiffe://cluster.local/ns/default/sa/client"),
        "access log names the peer:\n{log2}"
    );
    // The record names both ends as `ip:port` (`src.addr` with the client's ephemeral port).
    let record = log2
        .lines()
        .find(|l| l.contains("connection complete") && l.contains("direction=\"inbound\""))
        .unwrap_or_else(|| panic!("no inbound access record:\n{log2}"));
    let dst = addr(mesh.pod(server), ECHO_PORT);
    assert!(record.contains(&format!("dst.addr={dst} ")), "{record}");
    let src = format!("src.addr={}:", mesh.pod(client).ip);
    assert!(record.contains(&src), "{record}");
    // The connection has ended, so it is counted closed with the labels it opened with (the
    // counter moves as the record is written; wait a little for it all the same).
    let closed_line = |metrics: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("istio_tcp_connections_closed_total")
                    && l.contains("reporter=\"destination\"")
            })
            .map(str::to_owned)
    };
    let mut metrics = mesh.node(2).metrics().unwrap();
    for _ in 0..50 {
        if closed_line(&metrics).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        metrics = mesh.node(2).metrics().unwrap();
    }
    let closed =
        closed_line(&metrics).unwrap_or_else(|| panic!("no inbound close metric:\n{metrics}"));
    assert!(closed.ends_with(" 1"), "{closed}");
    assert!(
        closed.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/client\""),
        "{closed}"
    );
}

#[test]
fn same_node_and_service_vip_balance_over_endpoints() {
    let mut b = MeshBuilder::new("l4svc", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let local = b
        .pod(1, PodSpec::new("echo-a").sa("echo").label("app", "echo"))
        .unwrap();
    let remote = b
        .pod(2, PodSpec::new("echo-b").sa("echo").label("app", "echo"))
        .unwrap();
    b.yaml("services:\n  - {name: echo, namespace: default, vips: [10.96.0.10], ports: [{port: 80, targetPort: 8080}], selector: {app: echo}}\n");
    let mesh = b.start().unwrap();
    let _a = serve(mesh.pod(local));
    let _b = serve(mesh.pod(remote));

    // Same node, pod IP.
    let reply = send(
        mesh.pod(client),
        addr(mesh.pod(local), ECHO_PORT),
        "same-node",
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
    assert!(
        reply.contains("hello from echo-a") && reply.contains("same-node"),
        "{reply}"
    );

    // Service VIP: port 80 -> 8080, both endpoints answer over a few connections.
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..24 {
        let reply = send(mesh.pod(client), vip, &format!("vip-{i}"))
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
        assert!(reply.contains(&format!("vip-{i}")), "{reply}");
        for name in ["echo-a", "echo-b"] {
            if reply.contains(&format!("hello from {name}")) {
                seen.insert(name);
            }
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "both endpoints answered through the VIP: {seen:?}"
    );
}

const ALLOW_CLIENT_ONLY: &str = r#"
authorizationPolicies:
  - name: allow-client
    namespace: default
    selector: {matchLabels: {app: echo}}
    action: ALLOW
    rules:
      - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
"#;

const DENY_CLIENT: &str = r#"
authorizationPolicies:
  - name: deny-client
    namespace: default
    action: DENY
    rules:
      - from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]
        to: [{operation: {ports: ["8080"]}}]
"#;

#[test]
fn allow_and_deny_policies_are_enforced_at_the_destination() {
    let mut b = MeshBuilder::new("l4authz", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let intruder = b.pod(1, PodSpec::new("intruder")).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    b.yaml(ALLOW_CLIENT_ONLY);
    let mut mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));
    let target = addr(mesh.pod(server), ECHO_PORT);

    let ok = send(mesh.pod(client), target, "allowed")
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
    assert!(ok.contains("allowed"));
    let denied = send(mesh.pod(intruder), target, "should-not-arrive");
    assert!(denied.is_err(), "intruder was let in: {denied:?}");
    let log2 = mesh.node(2).ztunnel().stdout_containing("allow-client");
    assert!(
        log2.contains("allow-client"),
        "denial names the ALLOW policies tried:\n{log2}"
    );

    // Live update: a DENY for the client wins over no ALLOW policy.
    mesh.update_yaml(DENY_CLIENT).unwrap();
    let denied = send(mesh.pod(client), target, "now-denied");
    assert!(denied.is_err(), "DENY policy not enforced: {denied:?}");
    assert!(
        mesh.node(2)
            .ztunnel()
            .stdout_containing("deny-client")
            .contains("deny-client"),
        "denial names the DENY policy"
    );
    let ok = send(mesh.pod(intruder), target, "intruder-ok-now");
    assert!(
        ok.is_ok(),
        "without ALLOW policies others are allowed: {ok:?}\n{}",
        logs(&mesh)
    );

    // An invalid config is rejected and the last good one (the DENY) stays in force.
    mesh.write_rejected_yaml(
        "authorizationPolicies:\n  - name: broken\n    namespace: default\n    action: NOPE\n",
    )
    .expect("an invalid config must not be loaded");
    let log2 = mesh.node(2).ztunnel().stdout_containing("rejected");
    assert!(
        log2.contains("rejected"),
        "the rejection is logged:\n{log2}"
    );
    assert!(
        send(mesh.pod(client), target, "still-denied").is_err(),
        "previous config must stay in force"
    );
}

const STRICT: &str = r#"
peerAuthentications:
  - name: strict
    namespace: default
    mtls: {mode: STRICT}
"#;

#[test]
fn plaintext_from_outside_the_mesh_is_allowed_unless_strict() {
    let mut b = MeshBuilder::new("l4plain", 2).unwrap();
    let outside = b.pod(1, PodSpec::new("legacy").outside()).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    let mut mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));
    let target = addr(mesh.pod(server), ECHO_PORT);

    let ok = send(mesh.pod(outside), target, "permissive")
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
    assert!(ok.contains("permissive"));
    // It went through ztunnel's plaintext capture, not straight to the app.
    let metrics = mesh.node(2).metrics().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("connection_security_policy=\"none\"")
                && l.contains("destination_workload=\"server\"")),
        "plaintext inbound counted:\n{metrics}"
    );

    mesh.update_yaml(STRICT).unwrap();
    let refused = send(mesh.pod(outside), target, "strict");
    assert!(
        refused.is_err(),
        "plaintext accepted under STRICT: {refused:?}"
    );
    assert!(
        mesh.node(2)
            .ztunnel()
            .stdout_containing("STRICT")
            .contains("STRICT"),
        "refusal logged with the reason"
    );
}

mod hbone_clients {
    //! Hand-made HBONE clients on the node network, talking straight to a pod's 15008.

    use super::*;
    use bytes::Bytes;
    use h2::client::SendRequest;
    use mesh_identity::tls::ServerIdentity;
    use mesh_identity::{CertificateAuthority, SpiffeId, TrustBundle, WorkloadCert};

    async fn dial(
        mesh: &Mesh,
        node: u8,
        dst: SocketAddr,
        cert: &WorkloadCert,
        bundle: &TrustBundle,
    ) -> anyhow::Result<SendRequest<Bytes>> {
        let name = mesh.topology().nodes()[usize::from(node) - 1]
            .netns
            .name()
            .to_owned();
        let ns = mesh_cni::netns::Netns::open_named(&name)?;
        let std =
            ns.run(move || std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5)))??;
        std.set_nonblocking(true)?;
        let tcp = tokio::net::TcpStream::from_std(std)?;
        let cfg =
            mesh_identity::tls::client_config(cert, bundle, ServerIdentity::AnyInTrustDomain)?;
        let name = rustls::pki_types::ServerName::IpAddress(dst.ip().into());
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await?;
        let (send, conn) = hbone::client::handshake(tls, &hbone::H2Config::default()).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    async fn status_of(send: &SendRequest<Bytes>, req: http::Request<()>) -> anyhow::Result<u16> {
        let mut s = send.clone().ready().await?;
        let (resp, _body) = s.send_request(req, false)?;
        Ok(resp.await?.status().as_u16())
    }

    fn connect_req(authority: &str) -> http::Request<()> {
        http::Request::builder()
            .method("CONNECT")
            .uri(authority)
            .body(())
            .unwrap()
    }

    fn mesh_with_server(tag: &str) -> (Mesh, usize, mesh_testbed::Process) {
        let mut b = MeshBuilder::new(tag, 2).unwrap();
        let server = b
            .pod(2, PodSpec::new("server").label("app", "echo"))
            .unwrap();
        b.yaml(ALLOW_CLIENT_ONLY);
        let mesh = b.start().unwrap();
        let srv = serve(mesh.pod(server));
        (mesh, server, srv)
    }

    #[tokio::test]
    async fn certificates_from_another_ca_or_with_the_wrong_identity_are_refused() {
        let (mesh, server, _srv) = mesh_with_server("l4certs");
        let hbone_addr = addr(mesh.pod(server), 15008);
        let target = addr(mesh.pod(server), ECHO_PORT).to_string();
        let bundle = mesh.ca().bundle();
        let id = |sa: &str| SpiffeId::new("cluster.local", "default", sa);

        // The right identity from the mesh CA is let through (the control case).
        let good = mesh
            .ca()
            .issue(&id("client"), Duration::from_secs(3600))
            .unwrap();
        let send = dial(&mesh, 1, hbone_addr, &good, &bundle).await.unwrap();
        assert_eq!(status_of(&send, connect_req(&target)).await.unwrap(), 200);

        // Same identity, foreign CA: the TLS handshake fails, no tunnel.
        let foreign = CertificateAuthority::generate("cluster.local").unwrap();
        let forged = foreign
            .issue(&id("client"), Duration::from_secs(3600))
            .unwrap();
        let refused = match dial(&mesh, 1, hbone_addr, &forged, &bundle).await {
            Err(_) => true,
            Ok(send) => status_of(&send, connect_req(&target)).await.is_err(),
        };
        assert!(refused, "a certificate from another CA was accepted");

        // Mesh CA, but an identity the policy does not allow: 401 on CONNECT.
        let other = mesh
            .ca()
            .issue(&id("intruder"), Duration::from_secs(3600))
            .unwrap();
        let send = dial(&mesh, 1, hbone_addr, &other, &bundle).await.unwrap();
        assert_eq!(status_of(&send, connect_req(&target)).await.unwrap(), 401);
    }

    #[tokio::test]
    async fn malformed_connect_requests_get_400() {
        let (mesh, server, _srv) = mesh_with_server("l4bad");
        let hbone_addr = addr(mesh.pod(server), 15008);
        let good = mesh
            .ca()
            .issue(
                &SpiffeId::new("cluster.local", "default", "client"),
                Duration::from_secs(3600),
            )
            .unwrap();
        let send = dial(&mesh, 1, hbone_addr, &good, &mesh.ca().bundle())
            .await
            .unwrap();

        // Authority is not the address the connection was made to.
        assert_eq!(
            status_of(&send, connect_req("10.2.0.250:8080"))
                .await
                .unwrap(),
            400
        );
        // A well-formed request that is not CONNECT.
        let get = http::Request::builder()
            .uri(format!("https://{}/", addr(mesh.pod(server), ECHO_PORT)))
            .body(())
            .unwrap();
        assert_eq!(status_of(&send, get).await.unwrap(), 400);
        // A target port of the proxy itself.
        let own = addr(mesh.pod(server), 15008).to_string();
        assert_eq!(status_of(&send, connect_req(&own)).await.unwrap(), 503);
        // Nothing listening at the target.
        let closed = addr(mesh.pod(server), 9).to_string();
        assert_eq!(status_of(&send, connect_req(&closed)).await.unwrap(), 503);
        // The connection is still usable after all those refusals.
        let ok = addr(mesh.pod(server), ECHO_PORT).to_string();
        assert_eq!(status_of(&send, connect_req(&ok)).await.unwrap(), 200);
    }
}

#[test]
fn enrolled_client_reaches_a_pod_outside_the_mesh_by_passthrough() {
    let mut b = MeshBuilder::new("l4pass", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let legacy = b.pod(2, PodSpec::new("legacy").outside()).unwrap();
    let mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(legacy));
    let reply = send(
        mesh.pod(client),
        addr(mesh.pod(legacy), ECHO_PORT),
        "to-legacy",
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
    assert!(
        reply.contains("hello from legacy") && reply.contains("to-legacy"),
        "{reply}"
    );
    // Counted by the source ztunnel as a plaintext (passthrough) connection.
    let metrics = mesh.node(1).metrics().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("reporter=\"source\"")
                && l.contains("connection_security_policy=\"none\"")),
        "passthrough counted:\n{metrics}"
    );
}

/// Both ends of the HBONE connection are ztunnel's sockets and use its `--tunnel-congestion`
/// (CUBIC by default) rather than the node's default (BBR on the CI guests); so do its ends of
/// the legs to the apps (the socket accepted on 15001, the connection to the server app).
#[test]
fn hbone_sockets_use_the_tunnel_congestion_control() {
    let mut b = MeshBuilder::new("l4cc", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    let mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));
    send(mesh.pod(client), addr(mesh.pod(server), ECHO_PORT), "cc")
        .unwrap_or_else(|e| panic!("send failed: {e}\n{}", logs(&mesh)));

    // The pooled HBONE connection outlives the request.
    for (pod, filter) in [(client, "dport"), (server, "sport")] {
        let pod = mesh.pod(pod);
        let text = established(pod, &[filter, "=", ":15008"]);
        assert!(
            text.contains("cubic"),
            "HBONE socket in {}: {text:?}\n{}",
            pod.name,
            logs(&mesh)
        );
    }

    // A connection the client app holds open shows the legs to the apps.
    let _held = hold_connection(mesh.pod(client), addr(mesh.pod(server), ECHO_PORT));
    let port = format!(":{ECHO_PORT}");
    // ztunnel's end of the connection to the server app (the app's own end has sport 8080).
    let to_app = wait_established(mesh.pod(server), &["dport", "=", port.as_str()])
        .unwrap_or_else(|| panic!("no connection to the server app\n{}", logs(&mesh)));
    assert!(
        to_app.contains("cubic"),
        "ztunnel -> server app: {to_app:?}"
    );
    let accepted = established(mesh.pod(client), &["sport", "=", ":15001"]);
    assert!(
        accepted.contains("cubic"),
        "client app -> ztunnel, ztunnel's end: {accepted:?}"
    );
}

/// The server app sees the client's own address, not its ztunnel's or its pod's, both through
/// HBONE and on plaintext inbound (ztunnel connects from it with IP_TRANSPARENT; the pod's
/// `fwmark 0x111` route brings the replies back), as with Istio's ztunnel.
#[test]
fn server_app_sees_the_client_address() {
    let mut b = MeshBuilder::new("l4src", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let legacy = b.pod(1, PodSpec::new("legacy").outside()).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    let mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));
    for from in [client, legacy] {
        let from = mesh.pod(from);
        let _held = hold_connection(from, addr(mesh.pod(server), ECHO_PORT));
        let seen = wait_established(mesh.pod(server), &["sport", "=", ":8080"])
            .unwrap_or_else(|| panic!("no connection reached the server\n{}", logs(&mesh)));
        let peer = seen.split_whitespace().nth(3).unwrap_or_default();
        assert!(
            peer.starts_with(&format!("{}:", from.ip)),
            "the app's peer is {peer}, not {} ({}): {seen:?}\n{}",
            from.ip,
            from.name,
            logs(&mesh)
        );
        // The connection works both ways with that source address.
        let reply = send(from, addr(mesh.pod(server), ECHO_PORT), "src")
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&mesh)));
        assert!(reply.contains("src"), "{reply}");
    }
}

/// A bulk transfer (64 MiB each way through an echo server) crosses both ztunnels intact and in
/// order: the relays that move to another worker under bulk load (`hbone::relay_tcp`) lose
/// nothing, on the client side and on the server side. (Even debug builds move here, as
/// `MESH_TEST_LOG=info,hbone::copy=debug` shows; the move itself is asserted in hbone's
/// `offload` tests, since a busy test machine may not reach the bulk rate.)
#[test]
fn bulk_transfer_through_two_ztunnels_keeps_every_byte() {
    const PLAIN_ECHO_PORT: u16 = 9090;
    let mut b = MeshBuilder::new("l4bulk", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let server = b.pod(2, PodSpec::new("server")).unwrap();
    let mesh = b.start().unwrap();
    let port = PLAIN_ECHO_PORT.to_string();
    let mut echo = mesh
        .pod(server)
        .spawn(
            mesh_testbed::bin_path("mesh-testapp"),
            &["serve", "--port", port.as_str()],
        )
        .unwrap();
    echo.wait_for_output("listening on", Duration::from_secs(10))
        .unwrap();
    let to = addr(mesh.pod(server), PLAIN_ECHO_PORT).to_string();
    let bytes = (64u64 << 20).to_string();
    let out = mesh
        .pod(client)
        .netns
        .run_timeout(
            mesh_testbed::bin_path("mesh-testapp"),
            &["bulk", "--to", to.as_str(), "--bytes", bytes.as_str()],
            Duration::from_secs(90),
        )
        .unwrap();
    assert!(
        out.success() && out.stdout.contains("intact"),
        "bulk transfer: {} {}\n{}",
        out.stdout,
        out.stderr,
        logs(&mesh)
    );
    // It went through the tunnel, and both ztunnels accounted every byte in each direction.
    let n = 64u64 << 20;
    for (node, direction) in [(1, "outbound"), (2, "inbound")] {
        let log = mesh
            .node(node)
            .ztunnel()
            .stdout_containing(&format!("dst.addr={to} "));
        let record = log
            .lines()
            .find(|l| {
                l.contains(&format!("dst.addr={to} "))
                    && l.contains(&format!("direction=\"{direction}\""))
            })
            .unwrap_or_else(|| panic!("no {direction} record for {to}:\n{}", logs(&mesh)));
        assert!(
            record.contains(&format!("bytes_sent={n} "))
                && record.contains(&format!("bytes_recv={n} ")),
            "{record}"
        );
    }
}
