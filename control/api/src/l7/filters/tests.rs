use super::*;
use crate::l7::route::{Filter, Rule};
use crate::l7::{build_routes, parse_documents};

fn rules(yaml_rules: &str) -> Vec<Rule> {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: ns}}
spec:
  parentRefs: [{{group: '', kind: Service, name: echo, port: 80}}]
  rules:
{yaml_rules}"
    );
    let objs = parse_documents("t", &yaml).unwrap();
    build_routes(&objs)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .remove(0)
        .rules
}

fn target<'a>(path: &'a str, query: Option<&'a str>) -> RequestTarget<'a> {
    RequestTarget {
        scheme: "http",
        host: "echo",
        port: 80,
        path,
        query,
    }
}

fn redirect_of(rule: &Rule) -> &Redirect {
    rule.filters
        .iter()
        .find_map(|f| match f {
            Filter::RequestRedirect(r) => Some(r),
            _ => None,
        })
        .expect("redirect filter")
}

#[test]
fn replace_prefix_follows_the_gateway_api_table() {
    let cases = [
        ("/foo", "/foo/bar", "/xyz", "/xyz/bar"),
        ("/foo", "/foo/bar", "", "/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo", "/foo/", "/xyz", "/xyz/"),
        ("/foo", "/foo", "", "/"),
        ("/foo", "/foo/", "", "/"),
        ("", "/foo", "/xyz", "/xyz/foo"),
    ];
    for (prefix, path, repl, want) in cases {
        assert_eq!(
            replace_prefix(path, prefix, repl),
            want,
            "{prefix} {path} {repl}"
        );
    }
}

/// MeshHTTPRouteRedirectPath / HostAndStatus / Port / Scheme / 30x expectations.
#[test]
fn conformance_redirect_locations() {
    let rs = rules(
        "  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 303}}]
",
    );
    let loc = |i: usize, path: &str| {
        let r = redirect_of(&rs[i]);
        (
            r.location(&target(path, None), &rs[i].matches[0].path),
            r.status,
        )
    };
    assert_eq!(
        loc(0, "/original-prefix/lemon"),
        ("http://echo/replacement-prefix/lemon".into(), 302)
    );
    assert_eq!(
        loc(1, "/full/path/original"),
        ("http://echo/full-path-replacement".into(), 302)
    );
    assert_eq!(
        loc(2, "/path-and-host"),
        ("http://example.org/replacement-prefix".into(), 302)
    );
    assert_eq!(
        loc(3, "/port-and-host"),
        ("http://example.org:8083/port-and-host".into(), 302)
    );
    assert_eq!(
        loc(4, "/scheme-and-status"),
        ("https://echo/scheme-and-status".into(), 301)
    );
    assert_eq!(loc(5, "/redirect"), ("http://echo/redirect".into(), 303));
    // The query is kept; a non-default service port is kept when the scheme does not change.
    let r = redirect_of(&rs[5]);
    let mut t = target("/redirect", Some("a=1"));
    t.port = 8080;
    assert_eq!(
        r.location(&t, &rs[5].matches[0].path),
        "http://echo:8080/redirect?a=1"
    );
}

/// MeshHTTPRouteRewritePath expectations.
#[test]
fn conformance_url_rewrites() {
    let rs = rules(
        "  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
  - matches: [{path: {type: PathPrefix, value: /full/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
  - matches: [{path: {type: PathPrefix, value: /prefix/rewrite-path-and-modify-headers}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: new.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /prefix}}}]
",
    );
    let rw = |i: usize, path: &str, q: Option<&str>| {
        let Filter::UrlRewrite(u) = &rs[i].filters[0] else {
            panic!()
        };
        u.rewritten_target(&target(path, q), &rs[i].matches[0].path)
    };
    assert_eq!(rw(0, "/prefix/one/two", None).as_deref(), Some("/one/two"));
    assert_eq!(
        rw(1, "/strip-prefix/three", None).as_deref(),
        Some("/three")
    );
    assert_eq!(rw(1, "/strip-prefix", None).as_deref(), Some("/"));
    assert_eq!(
        rw(2, "/full/one/two", Some("x=1")).as_deref(),
        Some("/one?x=1")
    );
    assert_eq!(
        rw(3, "/prefix/rewrite-path-and-modify-headers/one", None).as_deref(),
        Some("/prefix/one")
    );
    let Filter::UrlRewrite(u) = &rs[3].filters[0] else {
        panic!()
    };
    assert_eq!(u.hostname.as_deref(), Some("new.example"));
}

/// MeshHTTPRouteRequestHeaderModifier expectations, including case-insensitive names.
#[test]
fn conformance_header_modifiers() {
    let rs = rules(
        "  - matches: [{path: {type: PathPrefix, value: /multiple}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}]
        add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}]
        remove: [X-Header-Remove-1, X-Header-Remove-2]
    backendRefs: [{name: echo-v1, port: 8080}]
",
    );
    let Filter::RequestHeaderModifier(m) = &rs[0].filters[0] else {
        panic!()
    };
    let mut h: Vec<(String, String)> = vec![
        ("x-header-set-2".into(), "set-val-2".into()),
        ("X-Header-Add-2".into(), "add-val-2".into()),
        ("x-header-remove-2".into(), "remove-val-2".into()),
        ("Another-Header".into(), "another-header-val".into()),
    ];
    m.apply(&mut h);
    let get = |n: &str| {
        h.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(get("X-Header-Set-1"), "header-set-1");
    assert_eq!(get("X-Header-Set-2"), "header-set-2");
    assert_eq!(get("X-Header-Add-1"), "header-add-1");
    assert_eq!(get("X-Header-Add-2"), "add-val-2,header-add-2");
    assert_eq!(get("Another-Header"), "another-header-val");
    assert_eq!(get("X-Header-Remove-2"), "");
}
