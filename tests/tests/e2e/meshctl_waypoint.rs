//! End-to-end test of waypoints in local mode (DESIGN.md 5, 7) through the real `meshctl` binary:
//! a Gateway of class `istio-waypoint` gets a running `waypoint` (its own pod, not captured,
//! fed by control in `--control` mode); an HTTPRoute on the Service sends `x-canary: yes` to v2
//! and the rest to v1, counted by the waypoint's metrics (`reporter="waypoint"`); deleting the
//! Gateway removes the waypoint's pod and traffic goes direct again (ztunnel balances over both
//! versions, the header no longer matters).

#![allow(clippy::unwrap_used)]

use mesh_testbed::local::{
    LocalCluster, echo_versions_app, is_root, pod_ready as ready, requests_total, text, wait_until,
};

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: wp-e2e}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80}]
"#;

const GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: wp-e2e}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

#[test]
fn a_waypoint_gateway_runs_a_waypoint_that_routes_by_header_until_it_is_deleted() {
    if !is_root() {
        eprintln!("skipped: local mode needs root");
        return;
    }
    let c = LocalCluster::new("waypoint");
    c.up_with_meshctl_on_path(2);
    c.apply(
        "app.yaml",
        &format!("{}---\n{ROUTE}", echo_versions_app("wp-e2e")),
    );
    c.apply("gateway.yaml", GATEWAY);
    let logs = || {
        format!(
            "runtime:\n{}\ncontrol:\n{}",
            c.log("runtime"),
            c.log("control")
        )
    };

    // The runtime deploys the waypoint: a Deployment and a pod of the Gateway's name, labelled
    // for control and excluded from capture; the Gateway gets the pod's address.
    wait_until(
        "the waypoint pod ready and the Gateway programmed",
        || {
            let gw = c.stored("Gateway");
            gw.first()
                .is_some_and(|g| g["status"]["addresses"][0]["value"].is_string())
        },
        logs,
    );
    let pods = c.stored("Pod");
    let wp = pods
        .iter()
        .find(|p| p["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == "waypoint")
        .unwrap()
        .clone();
    assert!(ready(&wp), "{wp}");
    assert_eq!(wp["metadata"]["labels"]["istio.io/dataplane-mode"], "none");
    assert_eq!(wp["spec"]["serviceAccountName"], "waypoint");
    assert!(
        wp["metadata"]["annotations"]["ambient.istio.io/redirection"].is_null(),
        "the waypoint is not captured: {wp}"
    );
    let gw = &c.stored("Gateway")[0];
    assert_eq!(gw["status"]["addresses"][0]["value"], wp["status"]["podIP"]);
    let wp_pod = format!("wp-e2e/{}", wp["metadata"]["name"].as_str().unwrap());

    // Header routing through the waypoint: retry until control's config reached both sides.
    wait_until(
        "the canary header routed to v2",
        || {
            c.echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: yes"])
                .is_ok_and(|v| v["version"] == "v2")
        },
        || format!("{}\nwaypoint:\n{}", logs(), c.logs(&wp_pod)),
    );
    for _ in 0..10 {
        let canary = c
            .echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: yes"])
            .unwrap();
        assert_eq!(canary["version"], "v2", "{canary}");
        let plain = c
            .echo_json("wp-e2e/client", "http://echo.wp-e2e/", &[])
            .unwrap();
        assert_eq!(plain["version"], "v1", "{plain}");
        let other = c
            .echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: no"])
            .unwrap();
        assert_eq!(other["version"], "v1", "{other}");
    }
    // The waypoint counted them (its own metrics, reporter="waypoint").
    let metrics: String = c
        .pod_metrics(&wp_pod)
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ok = |extra: &str| {
        let mut labels = vec!["reporter=\"waypoint\"", "response_code=\"200\""];
        if !extra.is_empty() {
            labels.push(extra);
        }
        requests_total(&metrics, &labels)
    };
    assert!(ok("") >= 30.0, "{metrics}");
    assert!(
        ok("destination_workload=\"echo-v2-") >= 10.0
            && ok("destination_workload=\"echo-v1-") >= 20.0,
        "{metrics}"
    );

    // The Gateway deleted: the waypoint's Deployment and pod go, traffic goes direct (both
    // versions answer whatever the header says).
    c.delete("gateway.yaml", GATEWAY);
    wait_until(
        "the waypoint pod and deployment gone",
        || {
            c.stored("Pod").iter().all(|p| {
                p["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"].is_null()
            }) && c
                .stored("Deployment")
                .iter()
                .all(|d| d["metadata"]["name"] != "waypoint")
        },
        logs,
    );
    wait_until(
        "v1 answering the canary header (no waypoint: ztunnel balances over both)",
        || {
            c.echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: yes"])
                .is_ok_and(|v| v["version"] == "v1")
        },
        logs,
    );
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let v = c
            .echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: yes"])
            .unwrap();
        versions.insert(v["version"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        versions.len(),
        2,
        "both versions answer directly: {versions:?}"
    );
    c.wait_log(
        "ztunnel-node-1",
        "the direct connections logged by the client's ztunnel",
        |zlog| zlog.contains("dst.service=\"echo.wp-e2e.svc.cluster.local\""),
    );

    // The same through `meshctl waypoint --state`: apply writes the Gateway to the store, list
    // shows it programmed at its pod's address, routing is back; delete removes it and the label.
    let out = c.ok(&["waypoint", "apply", "-n", "wp-e2e"]);
    assert!(out.contains("waypoint wp-e2e/waypoint applied"), "{out}");
    wait_until(
        "waypoint list showing it programmed",
        || {
            let out = c.ok(&["waypoint", "list", "-n", "wp-e2e"]);
            out.contains("waypoint") && out.contains("True") && out.contains("10.")
        },
        logs,
    );
    wait_until(
        "the canary header routed to v2 again",
        || {
            c.echo_json("wp-e2e/client", "http://echo.wp-e2e/", &["x-canary: yes"])
                .is_ok_and(|v| v["version"] == "v2")
        },
        logs,
    );
    let out = c.meshctl(&["waypoint", "delete", "-n", "wp-e2e", "--name", "nope"]);
    assert!(!out.status.success() && text(&out.stderr).contains("no waypoint wp-e2e/nope"));
    let out = c.ok(&["waypoint", "delete", "-n", "wp-e2e"]);
    assert!(out.contains("label istio.io/use-waypoint removed"), "{out}");
    let out = c.ok(&["waypoint", "list", "-A"]);
    assert!(!out.contains("wp-e2e"), "{out}");
}
