//! End-to-end: ztunnels fed by a real `mesh-control` process (config stream + CA) in network namespaces.
//! A policy change reaches the proxies and takes effect; with control down they keep working on their last
//! config; when control is back they resync to what changed meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_testbed::Pod;
use mesh_testbed::mesh::{Mesh, MeshBuilder, PodSpec};

use crate::echo::{send, serve};

const ECHO_PORT: u16 = 8080;

const DENY_CLIENT: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/client"]}}]}]
"#;

fn logs(mesh: &Mesh) -> String {
    let control = mesh
        .control()
        .and_then(|c| c.process())
        .map(|p| p.stdout())
        .unwrap_or_default();
    format!(
        "--- control:\n{control}\n--- ztunnel node-1:\n{}\n--- ztunnel node-2:\n{}",
        mesh.node(1).ztunnel().stdout(),
        mesh.node(2).ztunnel().stdout()
    )
}

/// Retries `send` until `ok(result)` or the deadline (config propagation is asynchronous).
fn eventually(
    mesh: &Mesh,
    client: &Pod,
    to: SocketAddr,
    ok: impl Fn(&Result<String, String>) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = send(client, to, "ping");
        if ok(&r) {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: last result {r:?}\n{}", logs(mesh));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn control_streams_config_and_certificates_and_proxies_survive_its_outage() {
    let mut b = MeshBuilder::new("ctl", 2).unwrap();
    b.with_control();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let server = b
        .pod(2, PodSpec::new("server").label("app", "echo"))
        .unwrap();
    let mut mesh = b.start().unwrap();
    let _srv = serve(mesh.pod(server));
    let to = SocketAddr::new(mesh.pod(server).ip.into(), ECHO_PORT);

    // Certificates from control's CA: the mTLS connection works and the server saw the client identity.
    let reply = send(mesh.pod(client), to, "hello")
        .unwrap_or_else(|e| panic!("send: {e}\n{}", logs(&mesh)));
    assert!(reply.contains("hello from server"), "{reply}");
    let metrics = mesh.node(2).metrics().unwrap();
    assert!(
        metrics.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/client\""),
        "{metrics}"
    );

    // A policy change reaches the destination's ztunnel and takes effect.
    mesh.update_extra(DENY_CLIENT, &[2]).unwrap();
    eventually(
        &mesh,
        mesh.pod(client),
        to,
        |r| r.is_err(),
        "DENY policy not enforced",
    );

    // Remove it again, then take control down: the proxies keep working on their last config.
    mesh.update_extra("", &[2]).unwrap();
    eventually(
        &mesh,
        mesh.pod(client),
        to,
        |r| r.is_ok(),
        "traffic not allowed again",
    );
    mesh.stop_control().unwrap();
    for _ in 0..3 {
        send(mesh.pod(client), to, "while control is down")
            .unwrap_or_else(|e| panic!("send with control down: {e}\n{}", logs(&mesh)));
    }

    // A change made while control is down arrives when it is back: the ztunnels resync.
    let before = mesh.node(2).config_version();
    mesh.update_extra(DENY_CLIENT, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mesh.node(2).config_version(),
        before,
        "no config while control is down"
    );
    send(mesh.pod(client), to, "still allowed")
        .unwrap_or_else(|e| panic!("last config in force: {e}"));
    mesh.restart_control().unwrap();
    mesh.node(2).wait_config_version(before + 1).unwrap();
    eventually(
        &mesh,
        mesh.pod(client),
        to,
        |r| r.is_err(),
        "resynced DENY policy not enforced",
    );
}
