//! Status of invalid L7 objects written through the API server (issue 6: "invalid routes or regexes are NACKed
//! with a reason in status, last good config kept"), against a fake API server with the real kube-rs client,
//! watchers and control's status writer: an HTTPRoute updated with a bad regex gets `Accepted=False`
//! `UnsupportedValue` naming the field, its valid version stays in control's resources (what waypoints get), a
//! Warning Event is recorded, and the fixed version is accepted and sent; an invalid VirtualService gets Istio's
//! `validationMessages` (IST0106) and a Warning Event.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::fake_api::FakeApi;
use mesh_control::deployer::report::{Target, run};
use mesh_control::index::Resource;
use mesh_control::store::Store;
use serde_json::{Value, json};

const ROUTE_STATUS: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/reviews/status";
const VS_STATUS: &str =
    "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/ratings/status";
const EVENTS: &str = "/api/v1/namespaces/shop/events/";

fn route(generation: u32, regex: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "reviews", "namespace": "shop", "uid": "route-uid", "generation": generation},
        "spec": {
            "parentRefs": [{"name": "waypoint"}],
            "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": regex}}],
                       "backendRefs": [{"name": "reviews-v2", "port": 80}]}],
        }
    })
}

/// The last status body PATCHed to `path` once `check` holds for it (polls up to 10 s).
async fn status_at(api: &FakeApi, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let last = api
            .patches
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone());
        if let Some(b) = last.filter(|b| check(b)) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paths: Vec<String> = api
        .patches
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.0.clone())
        .collect();
    panic!("{what}: not written to {path}; patches: {paths:?}");
}

/// Warning Events recorded about `kind`, once there are `n` (polls up to 10 s; the status is written first).
async fn events_when(api: &FakeApi, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if events(api, kind).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events(api, kind)
}

/// Warning Events recorded about `kind`.
fn events(api: &FakeApi, kind: &str) -> Vec<Value> {
    api.singles
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, e)| p.starts_with(EVENTS) && e["involvedObject"]["kind"] == kind)
        .map(|(_, e)| e.clone())
        .collect()
}

fn accepted(body: &Value) -> &Value {
    &body["status"]["parents"][0]["conditions"][0]
}

/// The JSON control sends waypoints for the route.
fn sent(store: &Store) -> Option<String> {
    match store
        .lock()
        .resource("l7/httproute/shop/reviews")
        .map(|e| (*e.resource).clone())
    {
        Some(Resource::L7Object(j)) => Some(j),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_l7_objects_get_the_reason_in_status_and_an_event_and_the_last_valid_route_stays() {
    let api = FakeApi::new();
    api.add("gateways", json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "shop"},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}
    }));
    api.add("httproutes", route(1, "/v1/.*"));
    api.add("virtualservices", json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "ratings", "namespace": "shop", "uid": "vs-uid", "generation": 4},
        "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}, "weight": -5}]}]}
    }));
    let (client, store, stop) = api.watched().await;
    tokio::spawn(run(store.clone(), Target::Kube(client), stop.clone()));

    // Valid route: accepted, sent.
    let ok = status_at(&api, ROUTE_STATUS, "route accepted", |b| {
        accepted(b)["status"] == "True"
    })
    .await;
    assert_eq!(accepted(&ok)["reason"], "Accepted", "{ok}");
    let good = sent(&store).expect("the valid route is sent to waypoints");
    assert!(good.contains("/v1/.*"), "{good}");

    // Invalid VirtualService: Istio's validation message, the field in the condition, a Warning Event.
    let vs = status_at(&api, VS_STATUS, "VirtualService status", |b| {
        b["status"]["conditions"][0]["status"] == "False"
    })
    .await;
    let st = &vs["status"];
    assert_eq!(
        st["validationMessages"][0]["type"]["code"], "IST0106",
        "{vs}"
    );
    assert_eq!(st["validationMessages"][0]["level"], "ERROR", "{vs}");
    assert_eq!(st["observedGeneration"], 4, "{vs}");
    let msg = st["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("spec.http[0].route[0].weight"), "{msg}");
    assert!(
        msg.contains("no valid version was accepted before"),
        "{msg}"
    );
    assert!(
        store
            .lock()
            .resource("l7/virtualservice/shop/ratings")
            .is_none()
    );
    let vs_events = events_when(&api, "VirtualService", 1).await;
    assert_eq!(vs_events.len(), 1, "{vs_events:?}");
    assert_eq!(vs_events[0]["type"], "Warning");
    assert_eq!(vs_events[0]["involvedObject"]["uid"], "vs-uid");
    assert_eq!(vs_events[0]["message"], msg);
    assert!(
        events(&api, "HTTPRoute").is_empty(),
        "no event for a valid route"
    );

    // A bad-regex update of the route: not accepted, the field named, the valid version still sent.
    api.event("httproutes", "MODIFIED", route(2, "/v2/(["));
    let bad = status_at(&api, ROUTE_STATUS, "route rejected", |b| {
        accepted(b)["status"] == "False"
    })
    .await;
    let c = accepted(&bad);
    assert_eq!(c["reason"], "UnsupportedValue", "{bad}");
    assert_eq!(c["observedGeneration"], 2, "{bad}");
    let msg = c["message"].as_str().unwrap();
    assert!(msg.contains("spec.rules[0].matches[0].path"), "{msg}");
    assert!(
        msg.contains("the last valid version (generation 1) stays in force"),
        "{msg}"
    );
    assert_eq!(sent(&store).as_deref(), Some(good.as_str()));
    let route_events = events_when(&api, "HTTPRoute", 1).await;
    assert_eq!(route_events.len(), 1, "{route_events:?}");
    assert_eq!(route_events[0]["reason"], "InvalidConfig");
    assert_eq!(route_events[0]["message"], msg);

    // Fixed: accepted again and sent.
    api.event("httproutes", "MODIFIED", route(3, "/v2/.*"));
    let fixed = status_at(&api, ROUTE_STATUS, "route accepted again", |b| {
        accepted(b)["status"] == "True"
    })
    .await;
    assert_eq!(accepted(&fixed)["observedGeneration"], 3, "{fixed}");
    assert!(sent(&store).is_some_and(|j| j.contains("/v2/.*")));
    stop.cancel();
}
