use std::time::Duration;

use super::*;
use crate::l7::matching::SimpleRequest;
use crate::l7::table::{Destination, RouteTable, Selection};
use crate::l7::{L7Config, build, parse_documents};

fn config(yaml: &str) -> L7Config {
    build(&parse_documents("t", yaml).unwrap()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn dst() -> Destination<'static> {
    Destination {
        namespace: "bookinfo",
        name: "reviews",
        port: 9080,
        hostname: "reviews.bookinfo.svc.cluster.local",
    }
}

/// The first backend's subset (or "404"/"none").
fn subset_of(t: &RouteTable, req: &SimpleRequest) -> String {
    match t.select(&dst(), Some("bookinfo"), "reviews", req) {
        Selection::Matched { rule, .. } => match rule.backends.first().map(|b| &b.target) {
            Some(BackendTarget::Service { subset, .. }) => subset.clone().unwrap_or_default(),
            _ => "none".into(),
        },
        Selection::NotFound => "404".into(),
        Selection::NoRoute => "no-route".into(),
    }
}

/// Istio's "request routing" task: jason goes to v2, everyone else to v1.
#[test]
fn header_canary_routes_in_order() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
",
    );
    let t = RouteTable::new(c.routes, None);
    assert_eq!(
        subset_of(
            &t,
            &SimpleRequest::new("GET", "/").header("end-user", "jason")
        ),
        "v2"
    );
    assert_eq!(
        subset_of(
            &t,
            &SimpleRequest::new("GET", "/").header("end-user", "bob")
        ),
        "v1"
    );
    assert_eq!(
        subset_of(&t, &SimpleRequest::new("GET", "/reviews/0")),
        "v1"
    );
}

#[test]
fn order_wins_over_specificity_and_prefix_is_a_string_prefix() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews, subset: prefix}}]
  - match: [{uri: {exact: /api/exact}}]
    route: [{destination: {host: reviews, subset: exact}}]
",
    );
    let t = RouteTable::new(c.routes, None);
    assert_eq!(
        subset_of(&t, &SimpleRequest::new("GET", "/api/exact")),
        "prefix",
        "first rule wins"
    );
    assert_eq!(
        subset_of(&t, &SimpleRequest::new("GET", "/apiv2")),
        "prefix",
        "string prefix"
    );
    assert_eq!(subset_of(&t, &SimpleRequest::new("GET", "/other")), "404");
}

/// Traffic shifting (50/50, 80/20), delay 7s for jason, abort 500 for 80%, retries, timeout.
#[test]
fn blog_examples_become_weights_faults_retries_and_timeouts() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {delay: {percentage: {value: 100.0}, fixedDelay: 7s}}
    route: [{destination: {host: ratings, subset: v1}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {percentage: {value: 80}, httpStatus: 500}}
    route: [{destination: {host: ratings, subset: v1}}]
  - match: [{uri: {prefix: /retry}}]
    retries: {attempts: 3, perTryTimeout: 2s}
    timeout: 0.5s
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v3}, weight: 20}
",
    );
    let r = &c.routes[0];
    assert_eq!(r.kind, RouteKind::VirtualService);
    let Filter::Fault(f) = &r.rules[0].filters[0] else {
        panic!()
    };
    assert_eq!(f.delay, Some((Duration::from_secs(7), 1_000_000)));
    let Filter::Fault(f) = &r.rules[1].filters[0] else {
        panic!()
    };
    assert_eq!(
        f.abort.as_ref().map(|a| (a.http_status, a.per_million)),
        Some((500, 800_000))
    );
    let rule = &r.rules[2];
    let retry = rule.retry.as_ref().unwrap();
    assert_eq!(retry.attempts, 3);
    assert!(
        retry.connect_failure && retry.codes == vec![503],
        "Istio's default retryOn"
    );
    assert_eq!(rule.timeouts.request, Some(Duration::from_millis(500)));
    assert_eq!(rule.timeouts.backend_request, Some(Duration::from_secs(2)));
    let w: Vec<u32> = r.rules[3].backends.iter().map(|b| b.weight).collect();
    assert_eq!(w, [80, 20]);
    assert!(
        matches!(&r.rules[3].backends[0].target, BackendTarget::Service { port: 0, subset: Some(s), .. } if s == "v1")
    );
}

#[test]
fn header_ops_rewrite_redirect_and_mirror() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: example.org}
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /}
    headers: {request: {set: {X-A: a}, remove: [x-b]}, response: {add: {x-c: c}}}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 50}
    route: [{destination: {host: reviews, port: {number: 9080}}}]
",
    );
    let rules = &c.routes[0].rules;
    let Filter::RequestRedirect(r) = &rules[0].filters[0] else {
        panic!()
    };
    assert_eq!(
        (r.status, r.hostname.as_deref()),
        (301, Some("example.org"))
    );
    let kinds: Vec<String> = rules[1]
        .filters
        .iter()
        .map(|f| {
            serde_json::to_value(f).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "requestHeaderModifier",
            "responseHeaderModifier",
            "URLRewrite",
            "requestMirror"
        ]
    );
    let Filter::UrlRewrite(u) = &rules[1].filters[2] else {
        panic!()
    };
    assert_eq!(
        u.path,
        Some(PathModifier::ReplacePrefixMatch(String::new()))
    );
    let Filter::RequestMirror(m) = &rules[1].filters[3] else {
        panic!()
    };
    assert_eq!(m.per_million, 500_000);
}

/// Circuit breaking and outlier detection of Istio's task, and subsets.
#[test]
fn destination_rules_keep_subsets_and_policies() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
",
    );
    let dr = &c.destination_rules[0];
    assert_eq!(dr.service, ("default".to_owned(), "httpbin".to_owned()));
    assert_eq!(dr.policy.max_in_flight, Some(2));
    assert_eq!(dr.policy.max_requests_per_connection, Some(1));
    let o = dr.policy.outlier.as_ref().unwrap();
    assert_eq!(
        (o.consecutive_5xx, o.base_ejection, o.max_ejection_percent),
        (Some(1), Duration::from_secs(180), 100)
    );
    assert_eq!(
        dr.subset("v1").unwrap().policy.load_balancer,
        LoadBalancer::RoundRobin
    );
    assert_eq!(
        dr.subset("v2").unwrap().policy.load_balancer,
        LoadBalancer::Random
    );
    assert_eq!(
        dr.subset("v2").unwrap().policy.max_in_flight,
        Some(2),
        "inherited"
    );
}

#[test]
fn invalid_istio_objects_are_rejected_with_the_field() {
    let bad = [
        (
            "kind: VirtualService\nspec: {hosts: [r], http: [{match: [{uri: {regex: '('}}], route: [{destination: {host: r}}]}]}",
            "spec.http[0].match[0].uri",
        ),
        (
            "kind: VirtualService\nspec: {hosts: [r], http: [{route: []}]}",
            "spec.http[0].route",
        ),
        (
            "kind: VirtualService\nspec: {hosts: [r], http: [{retries: {retryOn: sometimes}, route: [{destination: {host: r}}]}]}",
            "spec.http[0].retries.retryOn",
        ),
        (
            "kind: VirtualService\nspec: {hosts: [], http: []}",
            "spec.hosts",
        ),
        (
            "kind: DestinationRule\nspec: {host: r, trafficPolicy: {loadBalancer: {simple: FASTEST}}}",
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            "kind: DestinationRule\nspec: {host: r, subsets: [{name: a}, {name: a}]}",
            "spec.subsets[1].name",
        ),
    ];
    for (doc, field) in bad {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nmetadata: {{name: x, namespace: default}}\n{doc}\n"
        );
        let errs = build(&parse_documents("t", &text).unwrap()).unwrap_err();
        assert!(errs[0].to_string().contains(field), "{doc}: {errs:?}");
    }
}

fn rejected(yaml: &str) -> String {
    let errors = build(&parse_documents("t", yaml).unwrap()).expect_err("must be rejected");
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn cors_policy_becomes_the_cors_filter() {
    let c = config(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - corsPolicy:
      allowOrigins: [{exact: 'https://app.example'}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
",
    );
    let rule = &c.routes[0].rules[0];
    let Some(Filter::Cors(cors)) = rule.filters.first() else {
        panic!("CORS is not the first filter: {:?}", rule.filters);
    };
    assert_eq!(cors.allow_origins, ["https://app.example"]);
    assert_eq!(cors.max_age, 86400);
    assert!(cors.allow_credentials);
    assert!(cors.origin_allowed("https://app.example"));
    assert!(!cors.origin_allowed("https://evil.example"));
    let e = rejected(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: bookinfo}
spec:
  hosts: [reviews]
  http: [{corsPolicy: {allowOrigins: [{prefix: 'https://'}]}, route: [{destination: {host: reviews}}]}]
",
    );
    assert!(
        e.contains("spec.http[0].corsPolicy.allowOrigins[0]") && e.contains("only exact"),
        "{e}"
    );
}

#[test]
fn unsupported_istio_fields_are_rejected_not_ignored() {
    let vs = |extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: bookinfo}}
spec:
  hosts: [reviews]
{extra}"
        )
    };
    let e = rejected(&vs("  tcp: [{route: [{destination: {host: reviews}}]}]\n"));
    assert!(
        e.contains("spec.tcp") && e.contains("only http routes"),
        "{e}"
    );
    let e = rejected(&vs("  tls: [{match: [{sniHosts: [a]}]}]\n"));
    assert!(e.contains("spec.tls"), "{e}");
    let e = rejected(&vs("  http: [{delegate: {name: other}}]\n"));
    assert!(e.contains("spec.http[0].delegate"), "{e}");
    let dr = |policy: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: d, namespace: bookinfo}}
spec:
  host: reviews
  trafficPolicy: {policy}
"
        )
    };
    // HBONE is ISTIO_MUTUAL; DISABLE is plaintext to endpoints outside the mesh: both accepted.
    assert_eq!(
        config(&dr("{tls: {mode: ISTIO_MUTUAL}}"))
            .destination_rules
            .len(),
        1
    );
    assert_eq!(
        config(&dr("{tls: {mode: DISABLE}}"))
            .destination_rules
            .len(),
        1
    );
    let e = rejected(&dr("{tls: {mode: SIMPLE}}"));
    assert!(
        e.contains("spec.trafficPolicy.tls.mode") && e.contains("SIMPLE"),
        "{e}"
    );
    let e = rejected(&dr("{loadBalancer: {localityLbSetting: {enabled: true}}}"));
    assert!(e.contains("localityLbSetting"), "{e}");
    let e = rejected(&dr("{loadBalancer: {consistentHash: {httpHeaderName: x}}}"));
    assert!(e.contains("consistentHash"), "{e}");
}
