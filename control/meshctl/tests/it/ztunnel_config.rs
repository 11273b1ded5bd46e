#![allow(clippy::unwrap_used)]
//! `meshctl ztunnel config` through the cluster path: the real kube-rs client lists the ztunnel
//! pods (label app=ztunnel) of a fake API server, picks the node's pod and port-forwards to it
//! (WebSocket, v4.channel.k8s.io); the forwarded connection reaches an HTTP server serving a
//! config dump captured from a real ztunnel (tests/tests/meshctl_ztunnel_config.rs with
//! MESH_CAPTURE_DUMP). Then the tables and raw JSON of each section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::fake_api::FakeApi;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use meshctl::ztunnel_cmd::{Section, Ztunnels};
use serde_json::{Value, json};

fn captured() -> String {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ztunnel_config_dump.json");
    std::fs::read_to_string(p).unwrap()
}

/// An HTTP/1.1 server answering `/config_dump` with `status` and `body`.
async fn admin(status: u16, body: String) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (code, text) = match req.uri().path() {
                            "/config_dump" => (status, body.clone()),
                            _ => (404, "not found".to_owned()),
                        };
                        async move {
                            let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn cluster(api: &FakeApi, admin: SocketAddr) {
    for (name, node, app) in [
        ("ztunnel-a1", "node-1", "ztunnel"),
        ("ztunnel-b2", "node-2", "ztunnel"),
        ("echo-x", "node-2", "echo"),
    ] {
        api.put(
            &format!("/api/v1/namespaces/istio-system/pods/{name}"),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "istio-system", "labels": {"app": app}},
                   "spec": {"nodeName": node, "containers": [{"name": "c"}]}}),
        );
    }
    api.forward_to(Arc::new(move || std::net::TcpStream::connect(admin)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_node_s_ztunnel_through_a_port_forward_and_renders_each_section() {
    let body = captured();
    let raw: Value = serde_json::from_str(&body).unwrap();
    let api = FakeApi::new();
    cluster(&api, admin(200, body).await);
    let client = api.clone().serve().await;
    let mut z = Ztunnels::with_client(client, "istio-system");

    let (node, dump) = z.dump(Some("node-2")).await.unwrap();
    assert_eq!(node, "node-2");
    let pf = api
        .requests_of("GET")
        .into_iter()
        .find(|r| r.path.ends_with("/portforward"))
        .unwrap();
    assert_eq!(
        pf.path,
        "/api/v1/namespaces/istio-system/pods/ztunnel-b2/portforward"
    );
    assert!(pf.query.contains("ports=15000"), "{}", pf.query);

    // Every workload of the captured dump is a row with its address and node.
    let table = dump.table(Section::Workloads);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let workloads = raw["config"]["workloads"].as_array().unwrap();
    assert!(!workloads.is_empty());
    for w in workloads {
        let name = w["name"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap();
        assert!(row.contains(w["addresses"][0].as_str().unwrap()), "{row}");
        assert!(row.contains(w["node"].as_str().unwrap()), "{row}");
    }
    let services = dump.table(Section::Services);
    for s in raw["config"]["services"].as_array().unwrap() {
        let row = services
            .lines()
            .find(|l| l.contains(s["name"].as_str().unwrap()))
            .unwrap();
        assert!(row.contains(s["vips"][0].as_str().unwrap()), "{services}");
    }
    let policies = dump.table(Section::Policies);
    for p in raw["config"]["authorizationPolicies"].as_array().unwrap() {
        assert!(policies.contains(p["name"].as_str().unwrap()), "{policies}");
    }
    assert!(dump.table(Section::Certificates).starts_with("IDENTITY"));
    assert!(dump.table(Section::All).contains("SERVICES"));

    // Raw JSON: the admin API's own, section by section.
    let services_json: Value = serde_json::from_str(&dump.json(Section::Services)).unwrap();
    assert_eq!(services_json, raw["config"]["services"]);
    let all: Value = serde_json::from_str(&dump.json(Section::All)).unwrap();
    assert_eq!(all, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ztunnels_and_failing_admin_apis_are_clear_errors() {
    let api = FakeApi::new();
    cluster(&api, admin(503, "not ready".to_owned()).await);
    let client = api.clone().serve().await;
    let mut z = Ztunnels::with_client(client, "istio-system");
    let e = z.dump(Some("node-9")).await.unwrap_err().to_string();
    assert!(e.contains("node-9") && e.contains("node-1, node-2"), "{e}");
    let e = z.dump(Some("node-1")).await.unwrap_err().to_string();
    assert!(
        e.contains("answered 503") && e.contains("ztunnel-a1"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_source_and_destination_nodes_through_port_forwards() {
    let api = FakeApi::new();
    cluster(&api, admin(200, captured()).await);
    let client = api.clone().serve().await;
    let z = Ztunnels::with_client(client, "istio-system");
    let e = meshctl::explain::explain_live(z, ("default", "client"), ("echo", 80))
        .await
        .unwrap();
    assert_eq!(e.verdict, "allow", "{}", e.text());
    assert_eq!(
        e.endpoints[0].reason,
        "allowed by ALLOW policy default/echo-allow-client"
    );
    assert_eq!(e.endpoints[0].mtls_mode, "STRICT");
    assert!(
        e.config_source.contains("node-1, node-2"),
        "{}",
        e.config_source
    );
    let forwarded: Vec<String> = api
        .requests_of("GET")
        .into_iter()
        .filter(|r| r.path.ends_with("/portforward"))
        .map(|r| r.path)
        .collect();
    assert!(
        forwarded.iter().any(|p| p.contains("ztunnel-a1"))
            && forwarded.iter().any(|p| p.contains("ztunnel-b2")),
        "{forwarded:?}"
    );
}
