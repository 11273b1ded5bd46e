//! Waypoint binding at L4: traffic for a waypoint-bound service or workload goes to the waypoint's 15008 with
//! `:authority` = the original destination, and the destination ztunnel accepts such a workload's traffic only
//! from its waypoint. The waypoint here is a minimal HBONE server run by the test in its pod (the L7 waypoint
//! is a later part); it answers with the authority it was asked for, then echoes.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_identity::SpiffeId;
use mesh_identity::tls::ServerIdentity;
use mesh_testbed::Pod;
use mesh_testbed::mesh::{Mesh, MeshBuilder, PodSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::echo::send;

/// Serves HBONE on 15008 inside `pod` with the waypoint's identity until the runtime ends.
fn start_waypoint(mesh: &Mesh, pod: &Pod) {
    let ns = mesh_cni::netns::Netns::open_named(pod.netns.name()).unwrap();
    let std = ns
        .run(|| std::net::TcpListener::bind("0.0.0.0:15008"))
        .unwrap()
        .unwrap();
    std.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(std).unwrap();
    let id = SpiffeId::new("cluster.local", "default", "waypoint");
    let cert = mesh.ca().issue(&id, Duration::from_secs(3600)).unwrap();
    let cfg = mesh_identity::tls::server_config(&cert, &mesh.ca().bundle()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok((tls, info)) =
                    hbone::accept_tls(&acceptor, tcp, Duration::from_secs(5)).await
                else {
                    return;
                };
                let handler = Arc::new(
                    |req: hbone::ConnectRequest, responder: hbone::Responder| async move {
                        let Ok(mut tunnel) = responder.accept() else {
                            return;
                        };
                        let line = format!(
                            "waypoint got authority={} from={}\n",
                            req.authority, req.conn.peer_identity
                        );
                        let _ = tunnel.write_all(line.as_bytes()).await;
                        let mut buf = Vec::new();
                        let _ = tunnel.read_to_end(&mut buf).await;
                        let _ = tunnel.write_all(&buf).await;
                        let _ = tunnel.shutdown().await;
                    },
                );
                let opts = hbone::ServeOptions::default();
                let _ =
                    hbone::serve_connection(tls, info, &opts, Default::default(), handler).await;
            });
        }
    });
}

const CONFIG: &str = "services:
  - {name: l7svc, namespace: default, vips: [10.96.0.20], ports: [{port: 80, targetPort: 8080}], selector: {app: l7}, waypoint: {address: WAYPOINT}}
";

async fn hbone_status(mesh: &Mesh, sa: &str, dst: SocketAddr, target: &str) -> u16 {
    let id = SpiffeId::new("cluster.local", "default", sa);
    let cert = mesh.ca().issue(&id, Duration::from_secs(3600)).unwrap();
    let ns = mesh_cni::netns::Netns::open_named(mesh.topology().nodes()[0].netns.name()).unwrap();
    let std = ns
        .run(move || std::net::TcpStream::connect_timeout(&dst, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    std.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(std).unwrap();
    let cfg = mesh_identity::tls::client_config(
        &cert,
        &mesh.ca().bundle(),
        ServerIdentity::AnyInTrustDomain,
    )
    .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(dst.ip().into());
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let (send, conn) = hbone::client::handshake(tls, &hbone::H2Config::default())
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("CONNECT")
        .uri(target)
        .body(())
        .unwrap();
    let mut s = send.ready().await.unwrap();
    let (resp, _) = s.send_request(req, false).unwrap();
    resp.await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waypoint_bound_traffic_goes_to_the_waypoint_and_only_it_may_reach_the_workload() {
    let mut b = MeshBuilder::new("l4wp", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let waypoint = b.pod(2, PodSpec::new("waypoint").outside()).unwrap();
    let wp_ip = b.pod_ip(waypoint).to_string();
    let server = b
        .pod(
            2,
            PodSpec::new("server").label("app", "l7").waypoint(&wp_ip),
        )
        .unwrap();
    b.yaml(&CONFIG.replace("WAYPOINT", &wp_ip));
    let mesh = b.start().unwrap();
    start_waypoint(&mesh, mesh.pod(waypoint));

    // A service with a waypoint: the client's ztunnel tunnels to the waypoint with the original VIP:port.
    let client_pod = mesh.pod(client);
    let reply = tokio::task::block_in_place(|| {
        send(client_pod, "10.96.0.20:80".parse().unwrap(), "hi-svc")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", mesh.node(1).ztunnel().stdout()));
    assert!(
        reply.contains("waypoint got authority=10.96.0.20:80"),
        "{reply}"
    );
    assert!(
        reply.contains("from=spiffe://cluster.local/ns/default/sa/client"),
        "the client's identity: {reply}"
    );
    assert!(reply.contains("hi-svc"), "{reply}");

    // A workload with a waypoint, addressed by its pod IP: also to the waypoint, authority = pod IP:port.
    let server_ip = mesh.pod(server).ip;
    let direct: SocketAddr = SocketAddr::new(server_ip.into(), 8080);
    let reply = tokio::task::block_in_place(|| send(client_pod, direct, "hi-pod"))
        .unwrap_or_else(|e| panic!("{e}\n{}", mesh.node(1).ztunnel().stdout()));
    assert!(
        reply.contains(&format!("waypoint got authority={direct}")),
        "{reply}"
    );

    // Straight to the workload's 15008: refused unless the peer is its waypoint.
    let hbone = SocketAddr::new(server_ip.into(), 15008);
    let target = direct.to_string();
    assert_eq!(
        hbone_status(&mesh, "client", hbone, &target).await,
        401,
        "a non-waypoint peer must be refused"
    );
    assert_eq!(
        hbone_status(&mesh, "waypoint", hbone, &target).await,
        503,
        "the waypoint passes (nothing listens: 503)"
    );
}
