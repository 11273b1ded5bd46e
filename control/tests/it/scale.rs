//! The scale: 10,000 pods, 1,000 services, 1,000 policies. Checks that a full translation produces every
//! resource and that one pod change stays incremental (one resource changed, one resource per stream); times are
//! printed only (no timing thresholds in tests): the release figures come from
//! `cargo run -p mesh-benches --release --example control_scale` (benches/README.md).

use std::time::{Duration, Instant};

use mesh_control::index::{Change, Index};
use mesh_control::objects::Object;
use mesh_control::translate::Options;
use mesh_control::xds::view::Subscriber;
use mesh_control::xds::{Sent, Undo};
use serde_json::json;

const PODS: usize = 10_000;
const SERVICES: usize = 1_000;
const POLICIES: usize = 1_000;
const NAMESPACES: usize = 50;

fn pod(i: usize, version: &str) -> Object {
    let ns = format!("ns-{}", i % NAMESPACES);
    let app = format!("app-{}", i % SERVICES);
    Object::from_value(
        0,
        json!({"apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": format!("pod-{i}"), "namespace": ns, "uid": format!("uid-{i}"),
                       "labels": {"app": app, "version": version},
                       "annotations": {"ambient.istio.io/redirection": "enabled"}},
          "spec": {"nodeName": format!("node-{}", i % 100), "serviceAccountName": app, "containers": [{"name": "c"}]},
          "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)}}),
    )
    .expect("pod")
}

fn objects() -> Vec<Object> {
    let mut out: Vec<Object> = (0..PODS).map(|i| pod(i, "v1")).collect();
    for i in 0..SERVICES {
        out.push(
            Object::from_value(
                0,
                json!({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
                  "spec": {"clusterIP": format!("10.96.{}.{}", i / 256, i % 256),
                           "selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}}),
            )
            .expect("service"),
        );
    }
    for i in 0..POLICIES {
        out.push(
            Object::from_value(
                0,
                json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                  "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns-{}", i % NAMESPACES)},
                  "spec": {"selector": {"matchLabels": {"app": format!("app-{i}")}},
                           "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/ns-0/sa/app-{i}")]}}]}]}}),
            )
            .expect("policy"),
        );
    }
    out
}

#[test]
fn ten_thousand_pods_translate_quickly_and_one_change_is_incremental() {
    let objs = objects();
    let mut index = Index::new(Options::default());
    let start = Instant::now();
    let changed = index.replace_all(objs);
    let full = start.elapsed();
    assert_eq!(changed.len(), PODS + SERVICES + POLICIES);
    let start = Instant::now();
    let changed = index.apply([Change::Upsert(pod(42, "v2"))]);
    let one = start.elapsed();
    // Only the pod's workload: its service was recomputed but its endpoints did not change.
    assert_eq!(changed, ["workload/uid-42"]);
    println!("full translation: {full:?}; one pod change: {one:?}");
}

/// A stream's state: subscriber, sent versions, undo of the last response, last index sequence seen.
type Stream = (Subscriber, Sent, Undo, Option<u64>);

#[test]
fn one_change_reaches_every_node_view_quickly() {
    let mut index = Index::new(Options::default());
    index.replace_all(objects());
    // 30 of the 100 nodes (node-42, where the changed pod runs, among them): the per-stream cost is what scales;
    // the initial full responses of every stream would dominate a debug test run.
    let mut streams: Vec<Stream> = (20..50)
        .map(|n| {
            (
                Subscriber::Node(format!("node-{n}")),
                Sent::new(),
                Undo::new(),
                None,
            )
        })
        .collect();
    for (sub, sent, undo, last) in &mut streams {
        mesh_control::xds::delta(&index, sub, sent, undo, last, true).expect("first response");
        // The session clears this after the ACK of the first response (its size is not part of a change).
        undo.clear();
    }
    index.apply([Change::Upsert(pod(42, "v2"))]);
    let start = Instant::now();
    let mut sending = 0;
    let mut slowest = Duration::ZERO;
    for (sub, sent, undo, last) in &mut streams {
        let one = Instant::now();
        let resp = mesh_control::xds::delta(&index, sub, sent, undo, last, false);
        slowest = slowest.max(one.elapsed());
        if let Some(resp) = resp {
            assert_eq!(resp.resources.len(), 1, "only the changed workload");
            sending += 1;
        }
    }
    let all = start.elapsed();
    println!(
        "one change -> deltas for {} nodes: {all:?} (slowest stream {slowest:?})",
        streams.len()
    );
    assert_eq!(
        sending,
        streams.len(),
        "every ztunnel gets the changed workload"
    );
}
