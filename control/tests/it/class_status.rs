//! GatewayClass status through the API server (fake server, real kube-rs client, watchers and status writer):
//! control accepts the classes whose controller it is, as `kubectl get gatewayclass` shows, and leaves other
//! controllers' classes alone.

use std::time::Duration;

use crate::fake_api::FakeApi;
use mesh_control::deployer::report::{Target, run};
use serde_json::json;

const OURS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/istio-waypoint/status";
const THEIRS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/other/status";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_accepts_its_gateway_class_and_leaves_others_alone() {
    let api = FakeApi::new();
    let class = |name: &str, controller: &str| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name, "generation": 2},
            "spec": {"controllerName": controller}
        })
    };
    api.add(
        "gatewayclasses",
        class("other", "example.com/gateway-controller"),
    );
    api.add(
        "gatewayclasses",
        class("istio-waypoint", "istio.io/mesh-controller"),
    );
    let (client, store, stop) = api.watched().await;
    tokio::spawn(run(store.clone(), Target::Kube(client), stop.clone()));

    let patch_to = |path: &str| {
        api.patches
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, q, b)| (q.clone(), b.clone()))
    };
    let mut ours = None;
    for _ in 0..200 {
        ours = patch_to(OURS);
        if ours.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (query, body) = ours.expect("the istio-waypoint class gets a status");
    assert!(query.contains("fieldManager=mesh-control"), "{query}");
    let accepted = &body["status"]["conditions"][0];
    assert_eq!(
        (
            &accepted["type"],
            &accepted["status"],
            &accepted["observedGeneration"]
        ),
        (&json!("Accepted"), &json!("True"), &json!(2)),
        "{body}"
    );
    assert!(
        patch_to(THEIRS).is_none(),
        "another controller's class must not be touched"
    );
    stop.cancel();
}
