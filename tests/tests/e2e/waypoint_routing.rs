//! The waypoint end to end: client pod -> its ztunnel -> waypoint (HBONE, L7 routing) -> the
//! server's ztunnel -> echo pod, with real processes in network namespaces. Routes are
//! Gateway API HTTPRoutes written to the waypoint's routes directory.

use std::collections::HashMap;

use mesh_testbed::l7::{ECHO_SERVICES, EchoSpec, L7Mesh};

const ECHO: &str = "http://10.96.0.10/";

fn backends() -> Vec<EchoSpec> {
    vec![
        EchoSpec::new("echo-v1-5d9c7b8f6-x2x9q", "echo", "v1"),
        EchoSpec::new("echo-v2-6f8b9c7d5-k4k7p", "echo", "v2"),
    ]
}

fn route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{group: '', kind: Service, name: echo, port: 80}}]
  rules:
{rules}"
    )
}

/// Upstream's MeshHTTPRouteMatching route plus filters of the other conformance tests.
const RULES: &str = "  - matches:
    - path: {type: PathPrefix, value: /}
    - headers: [{name: version, value: one}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /v2}
    - headers: [{name: version, value: two}]
    backendRefs: [{name: echo-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set, value: set-overwrites-values}]
        add: [{name: X-Header-Add, value: add-appends-values}]
        remove: [X-Header-Remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Response-Set, value: set}]}
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: echo-v2, port: 80}]
  - matches: [{path: {type: Exact, value: /zero}}]
    backendRefs: [{name: echo-v1, port: 80, weight: 0}]
  - matches: [{path: {type: Exact, value: /missing-backend}}]
    backendRefs: [{name: echo-v9, port: 80}]
";

fn pods_of(answers: &[(u16, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, pod) in answers {
        *m.entry(pod.split('-').take(2).collect::<Vec<_>>().join("-"))
            .or_insert(0) += 1;
    }
    m
}

#[test]
fn http_routes_match_filter_redirect_and_fail_as_specified() {
    let m = L7Mesh::start("wprt", &backends(), ECHO_SERVICES).unwrap();
    let ctx = |what: &str| format!("{what}\nwaypoint log:\n{}", m.waypoint.logs());

    // No route yet: the service's own endpoints, both versions, through the waypoint.
    let r = m
        .curl(ECHO, &[])
        .unwrap_or_else(|e| panic!("{}", ctx(&e.to_string())));
    assert_eq!(r.status, 200, "{}", ctx(&r.body));
    let j = r.json();
    assert!(j["pod"].as_str().unwrap_or("").starts_with("echo-v"), "{j}");
    assert_eq!(j["host"], "10.96.0.10");
    let request_id = r.backend_header("x-request-id").unwrap_or_default();
    assert_eq!(request_id.len(), 36, "x-request-id added: {j}");
    let tp = r.backend_header("traceparent").unwrap_or_default();
    assert!(
        tp.starts_with("00-") && tp.len() == 55,
        "traceparent added: {j}"
    );
    let seen = pods_of(&m.batch(ECHO, 20, &[]).unwrap());
    assert_eq!(
        seen.len(),
        2,
        "both versions serve without a route: {seen:?}"
    );

    m.waypoint
        .apply_routes("matching.yaml", &route("mesh-matching", RULES))
        .unwrap();
    let get = |path: &str, extra: &[&str]| {
        m.curl(&format!("http://10.96.0.10{path}"), extra)
            .unwrap_or_else(|e| panic!("{}", ctx(&e.to_string())))
    };
    let cases: [(&str, &[&str], &str); 8] = [
        ("/", &[], "echo-v1"),
        ("/example", &[], "echo-v1"),
        ("/", &["-H", "version: one"], "echo-v1"),
        ("/v2", &[], "echo-v2"),
        ("/v2/example", &[], "echo-v2"),
        ("/", &["-H", "version: two"], "echo-v2"),
        ("/v2example", &[], "echo-v1"),
        ("/foo/v2/example", &[], "echo-v1"),
    ];
    for (path, extra, want) in cases {
        let r = get(path, extra);
        assert_eq!(r.status, 200, "{path} {extra:?}: {}", ctx(&r.body));
        assert!(
            r.pod().starts_with(want),
            "{path} {extra:?} -> {} (want {want})",
            r.pod()
        );
    }
    // All 20 to v1 now (the route overrides the service's own balancing).
    let seen = pods_of(&m.batch(ECHO, 20, &[]).unwrap());
    assert_eq!(seen.get("echo-v1"), Some(&20), "{seen:?}");

    // Redirect: no backend, the Location built from the filter and the request.
    let r = get("/redirect/a?x=1", &["-H", "Host: echo"]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("http://example.org/redirect/a?x=1")
    );

    // Header modifiers: set overwrites, add appends, remove removes; response header set.
    let r = get(
        "/headers",
        &[
            "-H",
            "X-Header-Set: old",
            "-H",
            "X-Header-Add: some-other-value",
            "-H",
            "X-Header-Remove: x",
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.backend_header("x-header-set").as_deref(),
        Some("set-overwrites-values")
    );
    assert_eq!(
        r.backend_header("x-header-add").as_deref(),
        Some("some-other-value,add-appends-values")
    );
    assert_eq!(r.backend_header("x-header-remove"), None, "{}", r.body);
    assert_eq!(r.header("x-response-set"), Some("set"));

    // URL rewrite: the backend sees the rewritten path.
    let r = get("/strip-prefix/three?q=1", &[]);
    assert!(r.pod().starts_with("echo-v2"), "{}", r.body);
    assert_eq!(r.json()["path"], "/three?q=1");

    // All-zero weights and an unknown backend service: 500.
    assert_eq!(get("/zero", &[]).status, 500);
    assert_eq!(get("/missing-backend", &[]).status, 500);

    // A route that matches nothing for a path: 404.
    let only = "  - matches: [{path: {type: Exact, value: /only}}]\n    backendRefs: [{name: echo-v1, port: 80}]\n";
    m.waypoint
        .apply_routes("matching.yaml", &route("mesh-matching", only))
        .unwrap();
    assert_eq!(get("/other", &[]).status, 404);
    assert!(get("/only", &[]).pod().starts_with("echo-v1"));

    // An invalid route is rejected with its reason; the previous routes stay in force.
    let bad = "  - matches: [{path: {type: RegularExpression, value: '/v('}}]\n    backendRefs: [{name: echo-v2, port: 80}]\n";
    let before = m.waypoint.routes_version();
    m.waypoint
        .write_routes_file("matching.yaml", &route("mesh-matching", bad))
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rejected = loop {
        let dump = m.waypoint.config_dump();
        if let Some(r) = dump["routes"]["rejected"].as_array() {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rejection reported: {dump}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let text = serde_json::Value::Array(rejected).to_string();
    assert!(text.contains("invalid regular expression"), "{text}");
    assert!(text.contains("HTTPRoute default/mesh-matching"), "{text}");
    assert_eq!(
        m.waypoint.routes_version(),
        before,
        "the bad set must not load"
    );
    assert_eq!(
        get("/other", &[]).status,
        404,
        "previous routes still in force"
    );

    // Telemetry: Istio request metrics with response codes and the client's identity.
    let metrics = m.waypoint.metrics();
    let line = |code: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("response_code=\"{code}\""))
            })
            .map(str::to_owned)
    };
    let ok = line("200").unwrap_or_else(|| panic!("no 200 requests in metrics:\n{metrics}"));
    assert!(ok.contains("reporter=\"waypoint\""), "{ok}");
    assert!(
        ok.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/client\""),
        "{ok}"
    );
    assert!(
        ok.contains("destination_service=\"echo.default.svc.cluster.local\""),
        "{ok}"
    );
    assert!(
        line("404").is_some_and(|l| l.contains("response_flags=\"NR\"")),
        "{metrics}"
    );
    assert!(line("500").is_some(), "{metrics}");
    // One access-log record per request, with the request id.
    let logs = m.waypoint.logs_when(|l| l.contains(&request_id));
    assert!(
        logs.contains(&request_id),
        "access log carries the request id"
    );
}

#[test]
fn weighted_backends_split_traffic_by_weight() {
    let m = L7Mesh::start("wpwt", &backends(), ECHO_SERVICES).unwrap();
    let rules = "  - backendRefs:\n    - {name: echo-v1, port: 80, weight: 70}\n    - {name: echo-v2, port: 80, weight: 30}\n";
    m.waypoint
        .apply_routes("weights.yaml", &route("mesh-weighted", rules))
        .unwrap();
    const N: usize = 1000;
    let answers = m.batch(ECHO, N, &[]).unwrap();
    assert!(answers.iter().all(|(c, _)| *c == 200), "{answers:?}");
    let seen = pods_of(&answers);
    let v1 = *seen.get("echo-v1").unwrap_or(&0) as f64 / N as f64;
    let v2 = *seen.get("echo-v2").unwrap_or(&0) as f64 / N as f64;
    // Each request picks at random: Binomial(1000, 0.7) has sd 1.45%, so +-7.5% is over 5 sd
    // (a false failure once in a few million runs; 300 requests and +-8%, 3 sd, failed
    // once in CI). A 50/50 or an all-to-one split is still far outside.
    assert!((v1 - 0.7).abs() < 0.075, "v1 share {v1} ({seen:?})");
    assert!((v2 - 0.3).abs() < 0.075, "v2 share {v2} ({seen:?})");
}

/// A Service of another namespace (`billing/invoices`, the v2 echo) as a route backend: refused
/// (500) until a ReferenceGrant in `billing` allows HTTPRoutes of `default`, and again once the
/// grant is gone.
#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let services = format!(
        "{ECHO_SERVICES}  - {{name: invoices, namespace: billing, vips: [10.96.0.20], waypoint: {{address: WAYPOINT}},
     endpoints: [default/echo-v2-6f8b9c7d5-k4k7p], ports: [{{port: 80, targetPort: 8080, appProtocol: http}}]}}
"
    );
    let m = L7Mesh::start("wprg", &backends(), &services).unwrap();
    let ctx = |what: &str| format!("{what}\nwaypoint log:\n{}", m.waypoint.logs());
    let get = || {
        m.curl(ECHO, &[])
            .unwrap_or_else(|e| panic!("{}", ctx(&e.to_string())))
    };
    let rules = "  - backendRefs: [{name: invoices, namespace: billing, port: 80}]\n";
    m.waypoint
        .apply_routes("cross.yaml", &route("mesh-cross", rules))
        .unwrap();
    let r = get();
    assert_eq!(r.status, 500, "no grant: {}", ctx(&r.body));

    let grant = |to: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: from-default, namespace: billing}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}}]
  to: [{to}]
"
        )
    };
    // A grant for another Service allows nothing.
    m.waypoint
        .apply_routes(
            "grant.yaml",
            &grant("{group: '', kind: Service, name: payments}"),
        )
        .unwrap();
    let r = get();
    assert_eq!(r.status, 500, "grant for another Service: {}", ctx(&r.body));

    m.waypoint
        .apply_routes(
            "grant.yaml",
            &grant("{group: '', kind: Service, name: invoices}"),
        )
        .unwrap();
    let r = get();
    assert_eq!(r.status, 200, "granted: {}", ctx(&r.body));
    assert!(r.pod().starts_with("echo-v2"), "{}", r.body);

    // Grant deleted: refused again.
    m.waypoint.apply_routes("grant.yaml", "").unwrap();
    let r = get();
    assert_eq!(r.status, 500, "grant deleted: {}", ctx(&r.body));
}
