//! End-to-end test of issue 6's bad-input rule for routes ("invalid routes or regexes are NACKed with a reason in
//! status, last good config kept"), in a local cluster with a real waypoint fed by control: a valid HTTPRoute
//! works; a bad-regex update of it is not sent to the waypoint (control checks it with the waypoint's own
//! validator), so traffic keeps following the last valid version, `meshctl local get httproute` shows
//! `Accepted=False UnsupportedValue` naming the field, and the waypoint still takes other changes (a new route
//! on another Service takes effect meanwhile; an invalid DestinationRule gets Istio's `validationMessages`); the
//! fixed version then takes effect and is Accepted.

#![allow(clippy::unwrap_used)]

use mesh_testbed::local::{LocalCluster, echo_versions_app, is_root, wait_until};
use serde_json::Value;

const NS: &str = "l7-status";

const GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: l7-status}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

/// HTTPRoute `name` on Service `parent`: requests whose path matches `path` (a Gateway API path match) go to
/// `backend`.
fn route(name: &str, parent: &str, path: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 80}}]\n  rules:\n  \
         - matches: [{{path: {path}}}]\n    backendRefs: [{{name: {backend}, port: 80}}]\n"
    )
}

#[test]
fn a_bad_regex_update_keeps_the_last_valid_route_and_says_why_until_fixed() {
    if !is_root() {
        eprintln!("skipped: local mode needs root");
        return;
    }
    let c = LocalCluster::new("l7status");
    c.up_with_meshctl_on_path(2);
    c.apply(
        "app.yaml",
        &format!("{}---\n{GATEWAY}", echo_versions_app(NS)),
    );
    let logs = || {
        format!(
            "control:\n{}\nruntime:\n{}",
            c.log("control"),
            c.log("runtime")
        )
    };
    let version = |svc: &str| {
        c.echo_json(
            &format!("{NS}/client"),
            &format!("http://{svc}.{NS}/v1/x"),
            &[],
        )
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
    };
    let get = |name: &str| -> Value {
        let out = c.ok(&["local", "get", "httproute", name, "-n", NS, "-o", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let accepted = |r: &Value| r["status"]["parents"][0]["conditions"][0].clone();

    // 1. A valid route: everything to v2.
    c.apply(
        "route.yaml",
        &route("echo", "echo", "{type: PathPrefix, value: /}", "echo-v2"),
    );
    // Without the route the waypoint balances over both versions: five v2 answers in a row mean it is in force.
    wait_until(
        "the valid route in force (v2)",
        || (0..5).all(|_| version("echo").as_deref() == Some("v2")),
        logs,
    );
    wait_until(
        "the route Accepted",
        || accepted(&get("echo"))["status"] == "True",
        || format!("{}\n{}", get("echo"), logs()),
    );
    let ok = get("echo");
    assert_eq!(ok["metadata"]["generation"], 1, "{ok}");
    assert_eq!(accepted(&ok)["observedGeneration"], 1, "{ok}");

    // 2. A bad-regex update: rejected with the field named, the valid version stays in force.
    c.apply(
        "route.yaml",
        &route(
            "echo",
            "echo",
            "{type: RegularExpression, value: '/v([0-9'}",
            "echo-v1",
        ),
    );
    wait_until(
        "the bad update rejected in status",
        || accepted(&get("echo"))["status"] == "False",
        || format!("{}\n{}", get("echo"), logs()),
    );
    let bad = get("echo");
    let cond = accepted(&bad);
    assert_eq!(bad["metadata"]["generation"], 2, "{bad}");
    assert_eq!(cond["reason"], "UnsupportedValue", "{bad}");
    assert_eq!(cond["observedGeneration"], 2, "{bad}");
    let msg = cond["message"].as_str().unwrap();
    assert!(msg.contains("spec.rules[0].matches[0].path"), "{msg}");
    assert!(
        msg.contains("the last valid version (generation 1) stays in force"),
        "{msg}"
    );
    for _ in 0..10 {
        assert_eq!(
            version("echo").as_deref(),
            Some("v2"),
            "the last valid route still decides"
        );
    }
    // The waypoint still takes other changes: a new route on echo-v1 (to v2) takes effect meanwhile.
    c.apply(
        "other.yaml",
        &route(
            "other",
            "echo-v1",
            "{type: PathPrefix, value: /}",
            "echo-v2",
        ),
    );
    wait_until(
        "a new route applied while the bad one is held back",
        || version("echo-v1").as_deref() == Some("v2"),
        logs,
    );
    // An invalid DestinationRule is held back too, with Istio's validation message in its status.
    c.apply(
        "dr.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo, namespace: {NS}}}\n\
             spec: {{host: echo, subsets: [{{labels: {{version: v1}}}}]}}\n"
        ),
    );
    let dr = || -> Value {
        let out = c.ok(&[
            "local",
            "get",
            "destinationrule",
            "echo",
            "-n",
            NS,
            "-o",
            "json",
        ]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    wait_until(
        "the DestinationRule's validation message",
        || dr()["status"]["validationMessages"][0]["type"]["code"] == "IST0106",
        || format!("{}\n{}", dr(), logs()),
    );
    let dr = dr();
    let dr_msg = dr["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(dr_msg.contains("spec.subsets[0]"), "{dr}");
    assert_eq!(dr["status"]["conditions"][0]["status"], "False", "{dr}");
    assert_eq!(version("echo").as_deref(), Some("v2"));

    // The table and YAML views show the reason too.
    let table = c.ok(&["local", "get", "httproutes", "-n", NS]);
    let row = table
        .lines()
        .find(|l| l.contains(" echo "))
        .unwrap_or_default();
    assert!(
        row.contains("False") && row.contains("UnsupportedValue") && row.contains("stays in force"),
        "{table}"
    );
    let yaml = c.ok(&["local", "get", "httproute", "echo", "-n", NS, "-o", "yaml"]);
    assert!(yaml.contains("reason: UnsupportedValue"), "{yaml}");

    // 3. Fixed: the new version takes effect and is accepted.
    c.apply(
        "route.yaml",
        &route(
            "echo",
            "echo",
            "{type: RegularExpression, value: '/v[0-9]/.*'}",
            "echo-v1",
        ),
    );
    wait_until(
        "the fixed route in force (v1)",
        || version("echo").as_deref() == Some("v1"),
        logs,
    );
    wait_until(
        "the fixed route Accepted",
        || {
            let r = get("echo");
            accepted(&r)["status"] == "True" && accepted(&r)["observedGeneration"] == 3
        },
        || format!("{}\n{}", get("echo"), logs()),
    );
    assert_eq!(version("echo").as_deref(), Some("v1"));

    // ReferenceGrants are listed like the other L7 kinds.
    c.apply(
        "grant.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
             metadata: {{name: from-shop, namespace: {NS}}}\n\
             spec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}}]\n  \
             to: [{{group: \"\", kind: Service}}]\n"
        ),
    );
    let grants = c.ok(&["local", "get", "referencegrants", "-n", NS, "-o", "json"]);
    let grants: Value = serde_json::from_str(&grants).unwrap_or_else(|e| panic!("{e}: {grants}"));
    assert_eq!(
        grants["items"][0]["spec"]["from"][0]["namespace"], "shop",
        "{grants}"
    );
}
