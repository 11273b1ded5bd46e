//! The Kubernetes source against a fake API server speaking list/watch over HTTP (real kube-rs client and
//! watchers): initial list, sync, watch events (add, modify, delete) reaching the index.

use std::time::Duration;

use crate::fake_api::FakeApi;
use mesh_control::index::Resource;
use mesh_control::store::Store;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn pod(name: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": labels,
                     "annotations": {"ambient.istio.io/redirection": "enabled"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "web", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip}
    })
}

async fn eventually(
    store: &Store,
    what: &str,
    check: impl Fn(&mesh_control::index::Index) -> bool,
) {
    for _ in 0..200 {
        if check(&store.lock()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: not reached; resources: {:?}",
        store
            .lock()
            .resources()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_syncs_and_follows_watch_events() {
    let api = FakeApi::new();
    api.add(
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    api.add("pods", pod("web-1", json!({"app": "web"}), "10.1.0.5"));
    api.add("services", json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }));
    api.add("authorizationpolicies", json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-all", "namespace": "shop"}, "spec": {"action": "DENY", "rules": [{}]}
    }));
    let (_client, store, stop) = api.watched().await;

    tokio::time::timeout(WAIT, store.wait_synced())
        .await
        .expect("synced after every kind was listed");
    {
        let index = store.lock();
        let Some(Resource::Service(s)) = index.resource("service/shop/web").map(|e| &*e.resource)
        else {
            panic!("service missing")
        };
        assert_eq!(s.endpoints, ["uid-web-1"]);
        assert!(index.resource("workload/uid-web-1").is_some());
        assert!(index.resource("authz/shop/deny-all").is_some());
    }

    // Watch events: a new pod joins the service, a relabelled pod leaves it, a deleted policy goes.
    api.event(
        "pods",
        "ADDED",
        pod("web-2", json!({"app": "web"}), "10.1.0.6"),
    );
    eventually(&store, "web-2 endpoint", |i| {
        match i.resource("service/shop/web").map(|e| &*e.resource) {
            Some(Resource::Service(s)) => s.endpoints == ["uid-web-1", "uid-web-2"],
            _ => false,
        }
    })
    .await;
    api.event(
        "pods",
        "MODIFIED",
        pod("web-1", json!({"app": "other"}), "10.1.0.5"),
    );
    eventually(&store, "web-1 relabelled", |i| {
        match i.resource("service/shop/web").map(|e| &*e.resource) {
            Some(Resource::Service(s)) => s.endpoints == ["uid-web-2"],
            _ => false,
        }
    })
    .await;
    api.event(
        "authorizationpolicies",
        "DELETED",
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "deny-all", "namespace": "shop"}, "spec": {}}),
    );
    eventually(&store, "policy deleted", |i| {
        i.resource("authz/shop/deny-all").is_none()
    })
    .await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_applies_waypoint_objects_and_writes_gateway_status() {
    let api = FakeApi::new();
    api.add("gateways", json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "shop", "uid": "gw-uid", "generation": 3},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}
    }));
    api.add("gateways", json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "shop"},
        "spec": {"gatewayClassName": "other", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    }));
    let (client, store, stop) = api.watched().await;
    let opts = mesh_control::deployer::DeployerOptions {
        image: "example/waypoint:1".into(),
        args: vec![],
        control: Some(mesh_control::deployer::ControlAccess {
            address: "mesh-control.istio-system.svc:15012".into(),
            root_pem: "ROOT PEM".into(),
        }),
    };
    tokio::spawn(mesh_control::deployer::apply::run(
        client,
        store.clone(),
        opts,
        stop.clone(),
    ));

    let patches = || api.patches.lock().expect("lock").clone();
    for _ in 0..200 {
        if patches().len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = patches();
    let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/shop/configmaps/mesh-root-cert",
            "/api/v1/namespaces/shop/serviceaccounts/waypoint",
            "/apis/apps/v1/namespaces/shop/deployments/waypoint",
            "/api/v1/namespaces/shop/services/waypoint",
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/waypoint/status",
        ],
        "only the waypoint Gateway gets objects, after the root its pods mount"
    );
    let root = &got[0].2;
    assert_eq!(root["data"]["root-cert.pem"], "ROOT PEM");
    assert!(
        root["metadata"]["ownerReferences"].is_null(),
        "the root ConfigMap is shared by the namespace's waypoints: {root}"
    );
    let got = &got[1..];
    for (path, query, body) in &got[..3] {
        assert!(
            query.contains("fieldManager=mesh-control") && query.contains("force=true"),
            "{path}: {query}"
        );
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["uid"], "gw-uid",
            "{path}"
        );
        assert_eq!(
            body["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"], "waypoint",
            "{path}"
        );
    }
    let deployment = &got[1].2;
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["istio.io/dataplane-mode"],
        "none"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "example/waypoint:1");
    assert_eq!(
        pod["containers"][0]["args"][0],
        "--control=mesh-control.istio-system.svc:15012"
    );
    assert_eq!(pod["volumes"][1]["configMap"]["name"], "mesh-root-cert");
    let status = &got[3].2["status"];
    assert_eq!(
        status["addresses"][0]["value"], "10.96.7.7",
        "the Service's cluster IP"
    );
    assert_eq!(status["conditions"][0]["type"], "Accepted");
    assert_eq!(
        status["conditions"][1]["status"], "False",
        "no ready waypoint pod yet"
    );
    assert_eq!(status["conditions"][1]["observedGeneration"], 3);

    // A ready waypoint pod makes it Programmed (status only, objects unchanged).
    api.event("pods", "ADDED", json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "waypoint-abc", "namespace": "shop", "labels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}},
        "spec": {"serviceAccountName": "waypoint", "nodeName": "node-1", "containers": [{"name": "waypoint"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.9", "conditions": [{"type": "Ready", "status": "True"}]}
    }));
    for _ in 0..200 {
        if patches().len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = patches();
    assert_eq!(
        got.len(),
        6,
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    assert!(got[5].0.ends_with("/gateways/waypoint/status"));
    assert_eq!(got[5].2["status"]["conditions"][1]["status"], "True");
    stop.cancel();
}
