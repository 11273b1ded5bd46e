//! End-to-end tests of capture driven by the CNI chain: pods are created like a kubelet does
//! (bridge + host-local + mesh-cni), the real node agent decides from labels, the real ztunnel
//! serves them. Traffic crosses a fabric captured with tcpdump.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_testbed::Capture;
use mesh_testbed::cni::cluster::{CniCluster, CniPod, echo_roundtrip, wait_until};

const PORT: u16 = 8080;
const AMBIENT: [(&str, &str); 1] = [("istio.io/dataplane-mode", "ambient")];

fn addr(pod: &CniPod, port: u16) -> SocketAddr {
    SocketAddr::new(pod.ip.into(), port)
}

/// Sends `marker` from `client` to `server` while capturing node 1's fabric link; returns
/// (reply, marker seen on the wire, HBONE port seen).
fn send_captured(
    c: &CniCluster,
    client: &CniPod,
    server: &CniPod,
    marker: &str,
) -> (String, bool, bool) {
    let capture = Capture::node_fabric(&c.topology().nodes()[0]).expect("capture");
    let reply = client
        .send(addr(server, PORT), marker)
        .unwrap_or_else(|e| panic!("send failed: {e}\n{}", c.logs()));
    let summary = capture.stop().expect("stop capture");
    (
        reply,
        summary.contains(marker.as_bytes()),
        summary.ports().contains(&15008),
    )
}

#[test]
fn cni_chain_enrols_ambient_pods_and_their_traffic_across_nodes_is_mtls() {
    let mut c = CniCluster::start("cnimtls", 2).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    c.label_namespace("plain", &[]).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    let server = c.create_pod(2, "shop", "server", &[]).unwrap();
    let outsider = c.create_pod(1, "plain", "outsider", &[]).unwrap();
    let optout = c
        .create_pod(1, "shop", "optout", &[("istio.io/dataplane-mode", "none")])
        .unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();

    // ADD returned only after ztunnel took the pods: listeners are there already.
    assert!(
        client.ztunnel_listening() && server.ztunnel_listening(),
        "{}",
        c.logs()
    );
    assert!(
        outsider.ztunnel_gone() && optout.ztunnel_gone(),
        "not enrolled"
    );
    assert_eq!(c.redirected(1), vec!["uid-shop-client".to_string()]);
    assert_eq!(c.redirected(2), vec!["uid-shop-server".to_string()]);

    let marker = "MARKER-cni-enrolled-must-be-encrypted-1187";
    let (reply, plaintext, hbone) = send_captured(&c, &client, &server, marker);
    assert!(
        reply.contains("hello from server") && reply.contains(marker),
        "{reply}"
    );
    assert!(!plaintext, "the marker crossed the node link in plaintext");
    assert!(hbone, "traffic between nodes went to HBONE 15008");

    // A non-mesh pod talks to the enrolled server in plaintext (captured inbound on 15006).
    let reply = outsider.send(addr(&server, PORT), "from-outside").unwrap();
    assert!(reply.contains("from-outside"), "{reply}");

    // CNI CHECK of the whole chain passes for enrolled and plain pods.
    c.check_pod(&client)
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c.check_pod(&outsider).unwrap();
    let metrics = c.agent_metrics(1);
    assert!(metrics.contains("mesh_cni_pods_enrolled 1"), "{metrics}");
    assert!(
        metrics.contains("mesh_cni_pods_enrolled_not_enforced 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mesh_cni_ztunnel_connected 1"),
        "{metrics}"
    );
}

#[test]
fn labelling_a_namespace_switches_running_pods_between_direct_and_mtls() {
    let mut c = CniCluster::start("cnilabel", 2).unwrap();
    c.label_namespace("shop", &[]).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    let server = c.create_pod(2, "shop", "server", &[]).unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();

    let (reply, plaintext, _) = send_captured(&c, &client, &server, "MARKER-direct-before-label");
    assert!(reply.contains("MARKER-direct-before-label"), "{reply}");
    assert!(plaintext, "not enrolled yet: traffic is direct");
    let mut long_lived = client.connect(addr(&server, PORT)).unwrap();
    echo_roundtrip(&mut long_lived, "before-label\n").unwrap();

    // Label the namespace: both running pods are enrolled without a restart.
    let started = Instant::now();
    c.label_namespace("shop", &AMBIENT).unwrap();
    wait_until("both pods enrolled", || {
        client.ztunnel_listening() && server.ztunnel_listening()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    wait_until("rules installed", || {
        client.rules_complete() && server.rules_complete()
    })
    .unwrap();
    eprintln!("live enrolment of two pods took {:?}", started.elapsed());

    echo_roundtrip(&mut long_lived, "after-label\n")
        .expect("an existing connection survives enrolment");
    let (reply, plaintext, hbone) =
        send_captured(&c, &client, &server, "MARKER-enrolled-after-label");
    assert!(
        reply.contains("MARKER-enrolled-after-label"),
        "{reply}\n{}",
        c.logs()
    );
    assert!(!plaintext && hbone, "enrolled: mTLS over HBONE");

    // Removing the namespace label releases both running pods.
    c.label_namespace("shop", &[]).unwrap();
    wait_until("both pods released", || {
        client.ztunnel_gone() && server.ztunnel_gone()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    wait_until("rules removed", || {
        client.rules_absent() && server.rules_absent()
    })
    .unwrap();
    assert!(c.redirected(1).is_empty() && c.redirected(2).is_empty());
    let (reply, plaintext, _) = send_captured(&c, &client, &server, "MARKER-direct-after-unlabel");
    assert!(reply.contains("MARKER-direct-after-unlabel"), "{reply}");
    assert!(plaintext, "released: traffic is direct again");
}

#[test]
fn kubelet_probe_from_the_node_reaches_an_enrolled_pod_directly() {
    let mut c = CniCluster::start("cniprobe", 1).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let pod = c.create_pod(1, "shop", "web", &[]).unwrap();
    assert!(pod.ztunnel_listening());
    // A listener of the "app" in the pod that records who connected.
    let ns = pod.open_netns().unwrap();
    let listener = ns
        .run(|| std::net::TcpListener::bind(("0.0.0.0", 9090)))
        .unwrap()
        .unwrap();
    let accept = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer));
    let node = &c.topology().nodes()[0].netns;
    let out = node
        .run_timeout(
            mesh_testbed::bin_path("mesh-testapp"),
            &[
                "send",
                "--to",
                &format!("{}:9090", pod.ip),
                "--data",
                "probe",
                "--timeout-ms",
                "3000",
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    let peer = accept.join().unwrap().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "169.254.7.127",
        "the probe was SNATed on the node and skipped the proxy (send: {out:?})"
    );
}

#[test]
fn iptables_fallback_backend_captures_and_releases_too() {
    let mut c =
        CniCluster::start_with_backend("cniipt", 2, mesh_cni::rules::Backend::Iptables).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    let server = c.create_pod(2, "shop", "server", &[]).unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();
    assert!(
        client.rules_complete() && server.rules_complete(),
        "{}",
        c.logs()
    );
    let (reply, plaintext, hbone) = send_captured(&c, &client, &server, "MARKER-iptables-mtls");
    assert!(reply.contains("MARKER-iptables-mtls"), "{reply}");
    assert!(
        !plaintext && hbone,
        "captured and encrypted with the iptables rules"
    );

    c.label_namespace("shop", &[]).unwrap();
    wait_until("released", || {
        client.ztunnel_gone()
            && server.ztunnel_gone()
            && client.rules_absent()
            && server.rules_absent()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let (_, plaintext, _) = send_captured(&c, &client, &server, "MARKER-iptables-direct");
    assert!(plaintext, "released: direct again");
}

#[test]
fn bypass_inbound_capture_annotation_switches_a_running_pods_inbound_rules_live() {
    use mesh_cni::rules::RedirectOptions;
    const BYPASS: (&str, &str) = ("ambient.istio.io/bypass-inbound-capture", "true");
    let bypass = RedirectOptions {
        bypass_inbound: true,
        ..Default::default()
    };
    let mut c = CniCluster::start("cnibypass", 2).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    let server = c.create_pod(2, "shop", "server", &[]).unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();
    assert!(
        server.rules_complete(),
        "full capture before the annotation"
    );

    // Annotated live: the server's inbound redirect goes, nothing else changes.
    c.annotate_pod(&server, &[BYPASS]).unwrap();
    wait_until("the server's inbound capture is bypassed", || {
        server.rules_complete_with(&bypass)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(client.rules_complete(), "other pods keep full capture");
    assert!(
        server.ztunnel_listening(),
        "HBONE to the pod still reaches ztunnel"
    );
    // Mesh traffic to it still arrives over HBONE (ztunnel's 15008 is never redirected).
    let (reply, plaintext, hbone) = send_captured(&c, &client, &server, "MARKER-bypassed-inbound");
    assert!(
        reply.contains("MARKER-bypassed-inbound"),
        "{reply}\n{}",
        c.logs()
    );
    assert!(
        !plaintext && hbone,
        "mesh traffic to a bypassed pod is still mTLS"
    );

    // The annotation removed: full capture again.
    c.annotate_pod(&server, &[]).unwrap();
    wait_until("the server's inbound capture is back", || {
        server.rules_complete()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}
