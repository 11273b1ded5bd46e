use std::time::Duration;

use super::*;

const HEAD: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
";

fn build(rules: &str) -> Result<Vec<Route>, Vec<L7Error>> {
    let objs = parse_documents("t.yaml", &format!("{HEAD}{rules}")).expect("yaml");
    build_routes(&objs)
}

/// The single error of an invalid route, as text.
fn error_of(rules: &str) -> String {
    let errs = build(rules).expect_err("must be rejected");
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].to_string()
}

#[test]
fn documents_of_other_kinds_are_kept_apart_and_empty_ones_skipped() {
    let text = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n---\n".to_owned()
        + HEAD
        + "  - {}\n";
    let objs = parse_documents("t.yaml", &text).unwrap();
    assert_eq!(objs.len(), 2);
    assert!(matches!(&objs[0], L7Object::Other { kind, .. } if kind == "Service"));
    assert!(matches!(&objs[1], L7Object::HttpRoute(_)));
    let err = parse_documents("bad.yaml", "a: [").unwrap_err();
    assert!(err.to_string().starts_with("bad.yaml: document 0"), "{err}");
}

#[test]
fn a_valid_route_keeps_every_part() {
    let routes = build(
        "  - name: main
    matches: [{path: {type: Exact, value: /a}, method: GET, headers: [{name: X-A, value: b}]}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-r, value: '1'}]}}]
    backendRefs:
    - name: echo-v1
      port: 8080
      weight: 3
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-b, value: v1}]}}]
    timeouts: {request: 2s, backendRequest: 500ms}
    retry: {attempts: 3, codes: [503], backoff: 100ms}
",
    )
    .unwrap();
    let r = &routes[0];
    assert_eq!(
        (r.namespace.as_str(), r.name.as_str(), r.kind),
        ("ns", "r", RouteKind::Http)
    );
    assert_eq!(
        r.parents,
        vec![Parent::Service {
            namespace: "ns".into(),
            name: "echo".into(),
            port: Some(80)
        }]
    );
    let rule = &r.rules[0];
    assert_eq!(rule.name.as_deref(), Some("main"));
    assert_eq!(
        rule.matches[0].headers[0].name, "x-a",
        "header names are lower-cased"
    );
    assert_eq!(rule.backends[0].weight, 3);
    assert_eq!(rule.backends[0].filters.len(), 1);
    assert_eq!(rule.timeouts.request, Some(Duration::from_secs(2)));
    assert_eq!(
        rule.timeouts.backend_request,
        Some(Duration::from_millis(500))
    );
    let retry = rule.retry.as_ref().unwrap();
    assert_eq!((retry.attempts, retry.codes.as_slice()), (3, &[503u16][..]));
    assert_eq!(retry.backoff_for(1), Duration::from_millis(100));
    assert_eq!(retry.backoff_for(2), Duration::from_millis(200));
    assert_eq!(
        retry.backoff_for(9),
        Duration::from_millis(1000),
        "capped at 10x"
    );
    // The config dump form is JSON.
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["rules"][0]["timeouts"]["request"], "2000ms");
    assert_eq!(json["rules"][0]["matches"][0]["path"]["type"], "Exact");
}

#[test]
fn invalid_routes_are_rejected_with_the_field_and_reason() {
    let cases = [
        (
            "  - matches: [{path: {type: RegularExpression, value: '/v('}}]\n",
            "spec.rules[0].matches[0].path.value: invalid regular expression",
        ),
        (
            "  - matches: [{path: {value: 'v1'}}]\n",
            "must be an absolute path",
        ),
        (
            "  - matches: [{path: {type: Glob, value: /}}]\n",
            "\"Glob\" is not Exact, PathPrefix or RegularExpression",
        ),
        (
            "  - matches: [{headers: [{name: 'bad name', value: x}]}]\n",
            "matches[0].headers[0]: \"bad name\" is not a valid HTTP header name",
        ),
        (
            "  - matches: [{headers: [{type: RegularExpression, name: x, value: '('}]}]\n",
            "invalid regular expression",
        ),
        (
            "  - matches: [{method: FETCH}]\n",
            "\"FETCH\" is not an HTTP method",
        ),
        (
            "  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 200}}]\n",
            "200 is not a redirect status",
        ),
        (
            "  - filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]\n",
            "\"ftp\" is not http or https",
        ),
        (
            "  - filters: [{type: RequestRedirect}]\n",
            "filters[0].requestRedirect: required",
        ),
        (
            "  - filters: [{type: Teleport}]\n",
            "\"Teleport\" is not a supported rule-level filter",
        ),
        (
            "  - matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]\n",
            "needs every match of the rule to be a PathPrefix",
        ),
        (
            "  - filters: [{type: RequestRedirect, requestRedirect: {}}, {type: URLRewrite, urlRewrite: {}}]\n",
            "cannot be used together",
        ),
        (
            "  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: x}, {name: A, value: y}]}}]\n",
            "listed twice",
        ),
        (
            "  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: a, value: \"x\\ny\"}]}}]\n",
            "control characters",
        ),
        (
            "  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}}, {type: RequestHeaderModifier, requestHeaderModifier: {}}]\n",
            "may appear only once",
        ),
        (
            "  - backendRefs: [{name: a, port: 80, weight: 2000000}]\n",
            "is over 1000000",
        ),
        (
            "  - backendRefs: [{name: a, port: 80, filters: [{type: RequestRedirect, requestRedirect: {}}]}]\n",
            "not a supported backend-level filter",
        ),
        (
            "  - timeouts: {request: 1s, backendRequest: 2s}\n",
            "must not be longer than request",
        ),
        (
            "  - timeouts: {request: soon}\n",
            "timeouts.request: \"soon\" is not a duration",
        ),
        (
            "  - retry: {codes: [200]}\n",
            "retry.codes[0]: 200 is not a 4xx/5xx status",
        ),
        (
            "  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m}}}]\n",
            "needs a port",
        ),
    ];
    for (rules, want) in cases {
        let err = error_of(rules);
        assert!(err.contains(want), "{rules}\n  got: {err}\n  want: {want}");
        assert!(err.starts_with("HTTPRoute ns/r: spec.rules[0]"), "{err}");
    }
}

#[test]
fn backend_problems_make_the_backend_invalid_not_the_route() {
    let routes =
        build("  - backendRefs: [{name: a}, {kind: ServiceImport, name: b, port: 80}]\n").unwrap();
    let b = &routes[0].rules[0].backends;
    assert!(
        matches!(&b[0].target, BackendTarget::Invalid { reason } if reason.contains("needs a port"))
    );
    assert!(
        matches!(&b[1].target, BackendTarget::Invalid { reason } if reason.contains("ServiceImport"))
    );
}

#[test]
fn every_invalid_object_is_reported_and_duplicates_too() {
    let text = format!(
        "{HEAD}  - matches: [{{path: {{type: RegularExpression, value: '('}}}}]\n---\n{HEAD}  - {{}}\n---\n{}",
        "apiVersion: waypoint.mesh.io/v1alpha1\nkind: HTTPFault\nmetadata: {name: f, namespace: ns}\nspec: {abort: {httpStatus: 99}}\n"
    );
    let errs = build_routes(&parse_documents("t", &text).unwrap()).unwrap_err();
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{text:?}");
    assert!(
        text.iter()
            .any(|e| e.contains("HTTPFault ns/f: spec.abort.httpStatus")),
        "{text:?}"
    );
    assert!(text.iter().any(|e| e.contains("defined twice")), "{text:?}");
    assert!(
        text.iter()
            .any(|e| e.contains("invalid regular expression")),
        "{text:?}"
    );
}

#[test]
fn extension_refs_resolve_to_faults_or_stay_unresolved() {
    let text = format!(
        "apiVersion: waypoint.mesh.io/v1alpha1\nkind: HTTPFault\nmetadata: {{name: slow, namespace: ns}}\nspec: {{delay: {{fixedDelay: 7s}}}}\n---\n{HEAD}{}",
        "  - filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: slow}}]
  - filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: missing}}]
  - filters: [{type: ExtensionRef, extensionRef: {group: other.io, kind: Thing, name: x}}]
"
    );
    let routes = build_routes(&parse_documents("t", &text).unwrap()).unwrap();
    let f = |i: usize| routes[0].rules[i].filters[0].clone();
    assert!(
        matches!(f(0), Filter::Fault(Fault { delay: Some((d, 1_000_000)), .. }) if d == Duration::from_secs(7))
    );
    assert!(
        matches!(f(1), Filter::Unresolved { reason } if reason.contains("ns/missing does not exist"))
    );
    assert!(matches!(f(2), Filter::Unresolved { reason } if reason.contains("not supported")));
}

#[test]
fn a_route_without_rules_matches_everything_with_no_backend() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{kind: Service, group: '', name: echo}]\n";
    let routes = build_routes(&parse_documents("t", text).unwrap()).unwrap();
    assert_eq!(routes[0].namespace, "default");
    assert_eq!(routes[0].rules.len(), 1);
    assert!(routes[0].rules[0].backends.is_empty());
}

#[test]
fn parents_of_other_kinds_are_ignored_and_bad_ports_rejected() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: ns}\nspec:\n  parentRefs: [{group: networking.istio.io, kind: ServiceEntry, name: x}, {name: gw, port: 15008}]\n";
    let routes = build_routes(&parse_documents("t", text).unwrap()).unwrap();
    assert_eq!(
        routes[0].parents,
        vec![Parent::Gateway {
            namespace: "ns".into(),
            name: "gw".into(),
            port: Some(15008)
        }]
    );
    let bad = text.replace("15008", "70000");
    let errs = build_routes(&parse_documents("t", &bad).unwrap()).unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .contains("spec.parentRefs[1].port: 70000 is not a port"),
        "{errs:?}"
    );
}

#[test]
fn objects_given_as_json_parse_like_yaml() {
    let v = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo"}], "rules": [{}]}
    });
    let obj = object_from_json(v).unwrap();
    let routes = build_routes(&[obj]).unwrap();
    assert_eq!(routes[0].name, "r");
    let other = object_from_json(serde_json::json!({"apiVersion": "v1", "kind": "Pod"})).unwrap();
    assert!(matches!(other, L7Object::Other { .. }));
    assert!(object_from_json(serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "spec": {"rules": 3}})).is_err());
}

#[test]
fn parse_errors_name_the_field_at_fault() {
    let text = format!("{HEAD}  - matches: [{{path: {{type: Exact, value: [/x]}}}}]\n");
    let err = parse_documents("t.yaml", &text).expect_err("a list where a string goes");
    let msg = err.to_string();
    assert!(
        msg.contains("spec.rules[0].matches[0].path.value: invalid type: sequence"),
        "{msg}"
    );
    let vs = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "v", "namespace": "ns"},
        "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": -5}]}]}});
    let msg = object_from_json(vs).expect_err("negative weight");
    assert!(msg.starts_with("spec.http[0].route[0].weight: "), "{msg}");
}
