use super::*;
use crate::l7::matching::SimpleRequest;
use crate::l7::route::BackendTarget;
use crate::l7::{build_routes, parse_documents};

fn table(yaml: &str) -> RouteTable {
    let objs = parse_documents("test.yaml", yaml).expect("yaml");
    let routes = build_routes(&objs).unwrap_or_else(|e| panic!("{e:?}"));
    RouteTable::new(routes, Some(("ns", "waypoint")))
}

fn dst(name: &str, port: u16) -> Destination<'static> {
    let hostname: &'static str = Box::leak(format!("{name}.ns.svc.cluster.local").into_boxed_str());
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    Destination {
        namespace: "ns",
        name,
        port,
        hostname,
    }
}

/// The backend service name the request is routed to, or "404"/"none"/"no-route".
fn route_of(
    t: &RouteTable,
    d: &Destination<'_>,
    client: Option<&str>,
    req: &SimpleRequest,
) -> String {
    match t.select(d, client, "echo", req) {
        Selection::NoRoute => "no-route".into(),
        Selection::NotFound => "404".into(),
        Selection::Matched { rule, .. } => match rule.backends.first().map(|b| &b.target) {
            Some(BackendTarget::Service { name, .. }) => name.clone(),
            _ => "none".into(),
        },
    }
}

/// Upstream `httproute-matching.yaml` (MeshHTTPRouteMatching).
const MATCHING: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-matching, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{name: echo-v2, port: 8080}]
";

#[test]
fn conformance_path_and_header_matching() {
    let t = table(MATCHING);
    let d = dst("echo", 80);
    let get = |p: &str| SimpleRequest::new("GET", p);
    let cases = [
        (get("/"), "echo-v1"),
        (get("/example"), "echo-v1"),
        (get("/").header("Version", "one"), "echo-v1"),
        (get("/v2"), "echo-v2"),
        (get("/v2/example"), "echo-v2"),
        (get("/").header("Version", "two"), "echo-v2"),
        (get("/v2/"), "echo-v2"),
        (get("/v2example"), "echo-v1"),
        (get("/foo/v2/example"), "echo-v1"),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        assert_eq!(
            route_of(&t, &d, Some("ns"), req),
            *want,
            "case {i}: {req:?}"
        );
    }
    // The route is limited to port 80: port 8080 of the same service has no route.
    assert_eq!(
        route_of(&t, &dst("echo", 8080), Some("ns"), &get("/v2")),
        "no-route"
    );
    // Another service has no route.
    assert_eq!(
        route_of(&t, &dst("other", 80), Some("ns"), &get("/")),
        "no-route"
    );
}

/// Upstream `httproute-query-param-matching.yaml` (MeshHTTPRouteQueryParamMatching).
const QUERY: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-query-param-matching, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /path1}
      queryParams: [{name: animal, value: whale}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches:
    - headers: [{name: version, value: one}]
      queryParams: [{name: animal, value: whale}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - matches:
    - path: {type: PathPrefix, value: /path3}
      queryParams: [{name: animal, value: shark}]
    - path: {type: PathPrefix, value: /path4}
      headers: [{name: version, value: three}]
      queryParams: [{name: animal, value: kraken}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path5}}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: hydra}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
";

#[test]
fn conformance_query_param_matching_and_precedence() {
    let t = table(QUERY);
    let d = dst("echo", 80);
    let get = |p: &str| SimpleRequest::new("GET", p);
    let cases = [
        (get("/?animal=whale"), "echo-v1"),
        (get("/?animal=dolphin"), "echo-v2"),
        (get("/?animal=whale&otherparam=irrelevant"), "echo-v1"),
        (get("/?animal=dolphin&color=yellow"), "echo-v2"),
        (get("/?color=blue"), "404"),
        (get("/?animal=dog"), "404"),
        (get("/?animal=whaledolphin"), "404"),
        (get("/"), "404"),
        (get("/path1?animal=whale"), "echo-v1"),
        (get("/?animal=whale").header("version", "one"), "echo-v2"),
        (get("/path3?animal=shark"), "echo-v1"),
        (
            get("/path4?animal=kraken").header("version", "three"),
            "echo-v1",
        ),
        (get("/?animal=shark"), "404"),
        (get("/path4?animal=kraken"), "404"),
        (get("/path5?animal=hydra"), "echo-v1"),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        assert_eq!(
            route_of(&t, &d, Some("ns"), req),
            *want,
            "case {i}: {req:?}"
        );
    }
}

#[test]
fn exact_beats_prefix_beats_regex_and_method_headers_query_break_ties() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo}]
  rules:
  - matches: [{path: {type: RegularExpression, value: '/a.*'}}]
    backendRefs: [{name: regex, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: prefix-a, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a/b}}]
    backendRefs: [{name: prefix-ab, port: 80}]
  - matches: [{path: {type: Exact, value: /a/b}}]
    backendRefs: [{name: exact, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}, method: POST}]
    backendRefs: [{name: post, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}, queryParams: [{name: q, value: '1'}]}]
    backendRefs: [{name: query, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /a}, headers: [{name: h, value: '1'}]}]
    backendRefs: [{name: header, port: 80}]
",
    );
    let d = dst("echo", 80);
    let r = |req: SimpleRequest| route_of(&t, &d, None, &req);
    assert_eq!(r(SimpleRequest::new("GET", "/a/b")), "exact");
    assert_eq!(r(SimpleRequest::new("GET", "/a/b/c")), "prefix-ab");
    assert_eq!(r(SimpleRequest::new("GET", "/a/x")), "prefix-a");
    assert_eq!(r(SimpleRequest::new("GET", "/ax")), "regex");
    assert_eq!(
        r(SimpleRequest::new("POST", "/a?q=1").header("h", "1")),
        "post"
    );
    assert_eq!(
        r(SimpleRequest::new("GET", "/a?q=1").header("h", "1")),
        "header"
    );
    assert_eq!(r(SimpleRequest::new("GET", "/a?q=1")), "query");
    assert_eq!(r(SimpleRequest::new("GET", "/b")), "404");
}

#[test]
fn ties_go_to_the_older_route_then_by_name_then_rule_order() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-newer, namespace: ns, creationTimestamp: '2024-02-01T00:00:00Z'}
spec:
  parentRefs: [{group: '', kind: Service, name: echo}]
  rules: [{backendRefs: [{name: newer, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: z-older, namespace: ns, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  parentRefs: [{group: '', kind: Service, name: echo}]
  rules: [{backendRefs: [{name: older, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: other}]
  rules:
  - backendRefs: [{name: first, port: 80}]
  - backendRefs: [{name: second, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: other}]
  rules: [{backendRefs: [{name: by-name, port: 80}]}]
",
    );
    let req = SimpleRequest::new("GET", "/");
    assert_eq!(route_of(&t, &dst("echo", 80), None, &req), "older");
    assert_eq!(route_of(&t, &dst("other", 80), None, &req), "by-name");
}

/// Upstream `mesh-consumer-route.yaml` (MeshConsumerRoute): a route in the consumer namespace
/// for a service elsewhere changes only its own namespace's traffic.
#[test]
fn consumer_routes_apply_only_to_clients_of_their_namespace() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mesh-echo-add-header, namespace: consumer}
spec:
  parentRefs: [{group: '', kind: Service, name: echo-v1, namespace: ns}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Header-Set, value: set}]}}]
    backendRefs: [{name: echo-v1, namespace: ns, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: producer, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo-v1}]
  rules: [{backendRefs: [{name: producer-backend, port: 80}]}]
",
    );
    let d = dst("echo-v1", 80);
    let req = SimpleRequest::new("GET", "/");
    assert_eq!(route_of(&t, &d, Some("consumer"), &req), "echo-v1");
    assert_eq!(route_of(&t, &d, Some("ns"), &req), "producer-backend");
    assert_eq!(route_of(&t, &d, Some("third"), &req), "producer-backend");
    assert_eq!(route_of(&t, &d, None, &req), "producer-backend");
}

#[test]
fn gateway_parent_routes_apply_to_served_services_by_hostname() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: ns}
spec:
  parentRefs: [{name: waypoint}]
  hostnames: [echo.ns.svc.cluster.local]
  rules: [{backendRefs: [{name: via-gateway, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-gw, namespace: ns}
spec:
  parentRefs: [{name: not-me}]
  rules: [{backendRefs: [{name: never, port: 80}]}]
",
    );
    let req = SimpleRequest::new("GET", "/");
    assert_eq!(route_of(&t, &dst("echo", 80), None, &req), "via-gateway");
    assert_eq!(route_of(&t, &dst("reviews", 80), None, &req), "no-route");
}

#[test]
fn weighted_picks_follow_weights_and_all_zero_is_none() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: w, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 7070}]
  rules:
  - backendRefs:
    - {name: echo-v1, port: 7070, weight: 70}
    - {name: echo-v2, port: 7070, weight: 30}
    - {name: echo-v3, port: 7070, weight: 0}
",
    );
    let Selection::Matched { rule, .. } = t.select(
        &dst("echo", 7070),
        None,
        "echo",
        &SimpleRequest::new("POST", "/proto.EchoTestService/Echo"),
    ) else {
        panic!("no match");
    };
    let mut counts = HashMap::new();
    for roll in 0..1000u64 {
        let b = pick_backend(&rule.backends, roll).unwrap();
        let BackendTarget::Service { name, .. } = &b.target else {
            panic!()
        };
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.get("echo-v1"), Some(&700));
    assert_eq!(counts.get("echo-v2"), Some(&300));
    assert_eq!(counts.get("echo-v3"), None);
    let mut zero = rule.backends.clone();
    zero.iter_mut().for_each(|b| b.weight = 0);
    assert!(pick_backend(&zero, 5).is_none());
    assert!(pick_backend(&[], 5).is_none());
}

#[test]
fn grpc_method_matches() {
    let t = table(
        "
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo}]
  rules:
  - matches: [{method: {service: proto.EchoTestService, method: Echo}}]
    backendRefs: [{name: exact, port: 7070}]
  - matches: [{method: {service: proto.EchoTestService}}]
    backendRefs: [{name: service, port: 7070}]
  - matches: [{method: {method: ForwardEcho}}]
    backendRefs: [{name: method, port: 7070}]
  - matches: [{method: {type: RegularExpression, service: 'grpc\\.health\\..*'}, headers: [{name: x, value: y}]}]
    backendRefs: [{name: regex, port: 7070}]
",
    );
    let d = dst("echo", 80);
    let r = |p: &str| {
        route_of(
            &t,
            &d,
            None,
            &SimpleRequest::new("POST", p).header("x", "y"),
        )
    };
    assert_eq!(r("/proto.EchoTestService/Echo"), "exact");
    assert_eq!(r("/proto.EchoTestService/Other"), "service");
    assert_eq!(r("/other.Svc/ForwardEcho"), "method");
    assert_eq!(r("/grpc.health.v1.Health/Check"), "regex");
    assert_eq!(r("/x.Y/Z"), "404");
}
