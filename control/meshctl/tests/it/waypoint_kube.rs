#![allow(clippy::unwrap_used)]
//! `meshctl waypoint apply|list|delete` with the real kube-rs client against a fake API server
//! speaking HTTP get/list/patch/delete: the server-side-apply PATCH (field manager, force, content
//! type, manifest), the namespace label, Gateways parsed by list, delete and unlabel, and bad
//! input changing nothing.

use crate::fake_api::FakeApi;
use meshctl::waypoint::{self, WaypointFor};
use serde_json::json;

const GW: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways";

fn with_namespace(api: &FakeApi, ns: &str) {
    api.put(
        &format!("/api/v1/namespaces/{ns}"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": "a"}}}),
    );
}

#[tokio::test]
async fn apply_server_side_applies_a_waypoint_gateway_and_enrols_the_namespace() {
    let api = FakeApi::new();
    with_namespace(&api, "shop");
    let client = api.clone().serve().await;

    let out = waypoint::apply(&client, "shop", "wp", WaypointFor::All, true)
        .await
        .unwrap();
    assert!(out.contains("waypoint shop/wp applied"), "{out}");

    let patches = api.requests_of("PATCH");
    assert_eq!(patches.len(), 2, "{patches:?}");
    let apply = &patches[0];
    assert_eq!(apply.path, format!("{GW}/wp"));
    assert!(
        apply.content_type.starts_with("application/apply-patch"),
        "server-side apply content type, got {}",
        apply.content_type
    );
    assert!(
        apply.query.contains("fieldManager=meshctl"),
        "{}",
        apply.query
    );
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    assert_eq!(apply.body["spec"]["gatewayClassName"], "istio-waypoint");
    assert_eq!(
        apply.body["spec"]["listeners"],
        json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}])
    );
    assert_eq!(
        apply.body["metadata"]["labels"]["istio.io/waypoint-for"],
        "all"
    );

    let label = &patches[1];
    assert_eq!(label.path, "/api/v1/namespaces/shop");
    assert!(
        label.content_type.contains("merge-patch"),
        "{}",
        label.content_type
    );
    let ns = api.get("/api/v1/namespaces/shop").unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio.io/use-waypoint"], "wp");
    assert_eq!(ns["metadata"]["labels"]["team"], "a", "other labels kept");
}

#[tokio::test]
async fn list_shows_only_waypoints_with_their_for_type_and_programmed_status() {
    let api = FakeApi::new();
    api.put(&format!("{GW}/waypoint"), json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "shop", "labels": {"istio.io/waypoint-for": "workload"}},
        "spec": {"gatewayClassName": "istio-waypoint", "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
        "status": {"addresses": [{"type": "IPAddress", "value": "10.1.0.9"}],
                   "conditions": [{"type": "Programmed", "status": "True"}]}
    }));
    api.put(&format!("{GW}/ingress"), json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "shop"},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    }));
    api.put(
        "/apis/gateway.networking.k8s.io/v1/namespaces/other/gateways/wp2",
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "wp2", "namespace": "other"},
            "spec": {"gatewayClassName": "istio-waypoint", "listeners": []}
        }),
    );
    let client = api.clone().serve().await;

    let found = waypoint::list(&client, Some("shop")).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, "waypoint");
    assert_eq!(found[0].waypoint_for, "workload");
    assert_eq!(found[0].programmed, "True");
    let table = waypoint::render_table(&found, false);
    assert!(
        table.lines().nth(1).unwrap().starts_with("waypoint"),
        "{table}"
    );
    assert!(
        table.contains("True") && table.contains("10.1.0.9"),
        "{table}"
    );

    let all = waypoint::list(&client, None).await.unwrap();
    let names: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|w| (w.namespace.as_str(), w.name.as_str(), w.programmed.as_str()))
        .collect();
    assert_eq!(
        names,
        [("other", "wp2", "Unknown"), ("shop", "waypoint", "True")]
    );
}

#[tokio::test]
async fn delete_removes_the_waypoint_and_the_label_that_points_at_it() {
    let api = FakeApi::new();
    with_namespace(&api, "shop");
    let client = api.clone().serve().await;
    waypoint::apply(&client, "shop", "wp", WaypointFor::Service, true)
        .await
        .unwrap();
    assert!(api.get(&format!("{GW}/wp")).is_some());

    let out = waypoint::delete(&client, "shop", "wp").await.unwrap();
    assert!(out.contains("deleted") && out.contains("label"), "{out}");
    assert!(api.get(&format!("{GW}/wp")).is_none());
    let ns = api.get("/api/v1/namespaces/shop").unwrap();
    assert!(
        ns["metadata"]["labels"]
            .get("istio.io/use-waypoint")
            .is_none(),
        "{ns}"
    );
    assert_eq!(ns["metadata"]["labels"]["team"], "a");

    // A label naming another waypoint stays.
    waypoint::apply(&client, "shop", "wp", WaypointFor::Service, false)
        .await
        .unwrap();
    crate::fake_api::merge(
        api.objects
            .lock()
            .unwrap()
            .get_mut("/api/v1/namespaces/shop")
            .unwrap(),
        &json!({"metadata": {"labels": {"istio.io/use-waypoint": "other"}}}),
    );
    let out = waypoint::delete(&client, "shop", "wp").await.unwrap();
    assert!(!out.contains("label"), "{out}");
    let ns = api.get("/api/v1/namespaces/shop").unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio.io/use-waypoint"], "other");
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let api = FakeApi::new();
    with_namespace(&api, "shop");
    api.put(
        &format!("{GW}/public"),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "shop"},
            "spec": {"gatewayClassName": "istio", "listeners": []}
        }),
    );
    let client = api.clone().serve().await;

    let e = waypoint::apply(&client, "nowhere", "wp", WaypointFor::Service, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("namespace \"nowhere\" does not exist"), "{e}");
    let e = waypoint::apply(&client, "shop", "Not_A_Name", WaypointFor::Service, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid waypoint name"), "{e}");
    let e = waypoint::delete(&client, "shop", "public")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a waypoint"), "{e}");
    let e = waypoint::delete(&client, "shop", "missing")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no waypoint shop/missing"), "{e}");
    assert!(api.requests_of("PATCH").is_empty());
    assert!(api.requests_of("DELETE").is_empty());
    assert!(api.get(&format!("{GW}/public")).is_some());
}
