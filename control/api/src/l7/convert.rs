//! Validation: `HTTPRoute` / `GRPCRoute` specs become [`Route`]s, or a [`FieldError`] that names
//! the offending field and says what a valid value looks like.

mod filter;

use std::collections::HashMap;

use super::fault::Fault;
use super::grants::Grants;
use super::pattern::{Pattern, ValueMatch};
use super::route::{
    Backend, NamedMatch, Parent, PathMatch, Route, RouteKind, RouteMatch, Rule, Timeouts,
};
use super::spec::{
    GrpcMethodMatchSpec, GrpcRouteObject, HttpRouteMatchSpec, HttpRouteObject, NameValueMatchSpec,
    ObjectMetaSpec, ParentRefSpec, PathMatchSpec,
};
use crate::model::{FieldError, names};

pub use filter::check_header_value;

/// Most rules a route may have (Gateway API CRD limit).
pub const MAX_RULES: usize = 16;
/// Most matches per rule (Gateway API CRD limit: 64 matches per rule, at most 128 in a route).
pub const MAX_MATCHES: usize = 64;

/// HTTP methods a match may name (Gateway API `HTTPMethod`).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// What conversion needs besides the route itself: the `HTTPFault` objects `ExtensionRef`
/// filters may name, by (namespace, name), and the `ReferenceGrant`s that allow backends in
/// other namespaces.
#[derive(Debug, Clone, Default)]
pub struct ConvertContext {
    /// Faults by (namespace, name).
    pub faults: HashMap<(String, String), Fault>,
    /// Valid ReferenceGrants; a backend in another namespace without one is invalid (500).
    pub grants: Grants,
}

/// Checks an HTTP header name (RFC 9110 token).
pub fn check_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    Ok(())
}

fn meta(m: &ObjectMetaSpec) -> Result<(String, String), FieldError> {
    names::dns_subdomain(&m.name).map_err(|e| FieldError::new("metadata.name", e))?;
    let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
    names::dns_label(&ns).map_err(|e| FieldError::new("metadata.namespace", e))?;
    Ok((ns, m.name.clone()))
}

/// Validates an `HTTPRoute`.
pub fn http_route(obj: &HttpRouteObject, ctx: &ConvertContext) -> Result<Route, FieldError> {
    let (namespace, name) = meta(&obj.metadata)?;
    let spec = &obj.spec;
    let parents = parents(&spec.parent_refs, &namespace)?;
    if spec.rules.len() > MAX_RULES {
        return Err(FieldError::new(
            "spec.rules",
            format!("at most {MAX_RULES} rules per route"),
        ));
    }
    let mut rules = Vec::with_capacity(spec.rules.len().max(1));
    // Who refers to backends and filters: the same for every rule.
    let from = filter::Referrer {
        kind: RouteKind::Http,
        namespace: &namespace,
        parents: &parents,
        ctx,
    };
    for (i, r) in spec.rules.iter().enumerate() {
        let at = |e: FieldError| e.under(&format!("spec.rules[{i}]"));
        if r.matches.len() > MAX_MATCHES {
            return Err(at(FieldError::new(
                "matches",
                format!("at most {MAX_MATCHES} matches per rule"),
            )));
        }
        let mut matches = Vec::new();
        for (j, m) in r.matches.iter().enumerate() {
            matches.push(http_match(m).map_err(|e| at(e.under(&format!("matches[{j}]"))))?);
        }
        if matches.is_empty() {
            matches.push(RouteMatch::any());
        }
        let filters = filter::filters(&r.filters, &matches, &from, true)
            .map_err(|e| at(e.under("filters")))?;
        let backends = filter::backends(&r.backend_refs, &matches, &from)
            .map_err(|e| at(e.under("backendRefs")))?;
        let timeouts = match &r.timeouts {
            Some(t) => filter::timeouts(t).map_err(|e| at(e.under("timeouts")))?,
            None => Timeouts::default(),
        };
        let retry = match &r.retry {
            Some(t) => Some(filter::retry(t).map_err(|e| at(e.under("retry")))?),
            None => None,
        };
        rules.push(Rule {
            name: r.name.clone(),
            matches,
            filters,
            backends,
            timeouts,
            retry,
        });
    }
    Ok(Route {
        kind: RouteKind::Http,
        parents,
        hostnames: hostnames(&spec.hostnames)?,
        created: obj.metadata.creation_timestamp.clone(),
        namespace,
        name,
        rules: rules_or_default(rules),
    })
}

/// Validates a `GRPCRoute`. gRPC method matches become path matches on `/<service>/<method>`.
pub fn grpc_route(obj: &GrpcRouteObject, ctx: &ConvertContext) -> Result<Route, FieldError> {
    let (namespace, name) = meta(&obj.metadata)?;
    let spec = &obj.spec;
    let parents = parents(&spec.parent_refs, &namespace)?;
    if spec.rules.len() > MAX_RULES {
        return Err(FieldError::new(
            "spec.rules",
            format!("at most {MAX_RULES} rules per route"),
        ));
    }
    let mut rules = Vec::new();
    // Who refers to backends and filters: the same for every rule.
    let from = filter::Referrer {
        kind: RouteKind::Grpc,
        namespace: &namespace,
        parents: &parents,
        ctx,
    };
    for (i, r) in spec.rules.iter().enumerate() {
        let at = |e: FieldError| e.under(&format!("spec.rules[{i}]"));
        let mut matches = Vec::new();
        for (j, m) in r.matches.iter().enumerate() {
            let at_m = |e: FieldError| at(e.under(&format!("matches[{j}]")));
            let path = match &m.method {
                Some(mm) => grpc_method(mm).map_err(|e| at_m(e.under("method")))?,
                None => PathMatch::Prefix("/".into()),
            };
            let headers = named(&m.headers, true).map_err(|e| at_m(e.under("headers")))?;
            matches.push(RouteMatch {
                path,
                headers,
                query_params: Vec::new(),
                method: None,
            });
        }
        if matches.is_empty() {
            matches.push(RouteMatch::any());
        }
        for (j, f) in r.filters.iter().enumerate() {
            let allowed = [
                "RequestHeaderModifier",
                "ResponseHeaderModifier",
                "RequestMirror",
                "ExtensionRef",
            ];
            if !allowed.contains(&f.kind.as_str()) {
                return Err(at(FieldError::new(
                    format!("filters[{j}].type"),
                    format!("{:?} is not a GRPCRoute filter; use {allowed:?}", f.kind),
                )));
            }
        }
        let filters = filter::filters(&r.filters, &matches, &from, true)
            .map_err(|e| at(e.under("filters")))?;
        let backends = filter::backends(&r.backend_refs, &matches, &from)
            .map_err(|e| at(e.under("backendRefs")))?;
        rules.push(Rule {
            name: r.name.clone(),
            matches,
            filters,
            backends,
            timeouts: Timeouts::default(),
            retry: None,
        });
    }
    Ok(Route {
        kind: RouteKind::Grpc,
        parents,
        hostnames: hostnames(&spec.hostnames)?,
        created: obj.metadata.creation_timestamp.clone(),
        namespace,
        name,
        rules: rules_or_default(rules),
    })
}

/// A route without rules behaves like one rule that matches everything and has no backend (500).
fn rules_or_default(rules: Vec<Rule>) -> Vec<Rule> {
    if !rules.is_empty() {
        return rules;
    }
    vec![Rule {
        name: None,
        matches: vec![RouteMatch::any()],
        filters: Vec::new(),
        backends: Vec::<Backend>::new(),
        timeouts: Timeouts::default(),
        retry: None,
    }]
}

fn grpc_method(m: &GrpcMethodMatchSpec) -> Result<PathMatch, FieldError> {
    let exact = match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => true,
        "RegularExpression" => false,
        other => {
            return Err(FieldError::new(
                "type",
                format!("{other:?} is not Exact or RegularExpression"),
            ));
        }
    };
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    if service.is_none() && method.is_none() {
        return Err(FieldError::new("", "one of service or method is required"));
    }
    if exact {
        for (f, v) in [("service", service), ("method", method)] {
            if v.is_some_and(|v| v.contains('/')) {
                return Err(FieldError::new(f, "must not contain '/'"));
            }
        }
        return Ok(match (service, method) {
            (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
            (Some(s), None) => PathMatch::Prefix(format!("/{s}")),
            (None, Some(m)) => PathMatch::Regex(
                Pattern::new(&format!("/[^/]+/{}", regex::escape(m)))
                    .map_err(|e| FieldError::new("method", e))?,
            ),
            (None, None) => PathMatch::Prefix("/".into()),
        });
    }
    for (f, v) in [("service", service), ("method", method)] {
        if let Some(v) = v {
            Pattern::new(v).map_err(|e| FieldError::new(f, e))?;
        }
    }
    let pattern = format!(
        "/(?:{})/(?:{})",
        service.unwrap_or("[^/]+"),
        method.unwrap_or("[^/]+")
    );
    Pattern::new(&pattern)
        .map(PathMatch::Regex)
        .map_err(|e| FieldError::new("", e))
}

fn http_match(m: &HttpRouteMatchSpec) -> Result<RouteMatch, FieldError> {
    let path = match &m.path {
        Some(p) => path_match(p).map_err(|e| e.under("path"))?,
        None => PathMatch::Prefix("/".into()),
    };
    let method = match &m.method {
        Some(meth) if METHODS.contains(&meth.as_str()) => Some(meth.clone()),
        Some(meth) => {
            return Err(FieldError::new(
                "method",
                format!("{meth:?} is not an HTTP method; use one of {METHODS:?}"),
            ));
        }
        None => None,
    };
    Ok(RouteMatch {
        path,
        headers: named(&m.headers, true).map_err(|e| e.under("headers"))?,
        query_params: named(&m.query_params, false).map_err(|e| e.under("queryParams"))?,
        method,
    })
}

fn path_match(p: &PathMatchSpec) -> Result<PathMatch, FieldError> {
    let value = p.value.clone().unwrap_or_else(|| "/".into());
    let kind = p.kind.as_deref().unwrap_or("PathPrefix");
    if kind != "RegularExpression" {
        if !value.starts_with('/') {
            return Err(FieldError::new(
                "value",
                format!("{value:?} must be an absolute path starting with '/'"),
            ));
        }
        if value.contains("//") || value.contains(['?', '#']) {
            return Err(FieldError::new(
                "value",
                format!("{value:?} must not contain '//', '?' or '#'"),
            ));
        }
    }
    match kind {
        "Exact" => Ok(PathMatch::Exact(value)),
        "PathPrefix" => Ok(PathMatch::Prefix(trim_slash(&value))),
        "RegularExpression" => Pattern::new(&value)
            .map(PathMatch::Regex)
            .map_err(|e| FieldError::new("value", e)),
        other => Err(FieldError::new(
            "type",
            format!("{other:?} is not Exact, PathPrefix or RegularExpression"),
        )),
    }
}

/// `/abc/` -> `/abc`; `/` stays.
pub(crate) fn trim_slash(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// Header (`header` = true: names case-insensitive, lower-cased) or query parameter matches.
/// Only the first entry of a name counts (Gateway API).
fn named(list: &[NameValueMatchSpec], header: bool) -> Result<Vec<NamedMatch>, FieldError> {
    let mut out: Vec<NamedMatch> = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let field = format!("[{i}]");
        if header {
            check_header_name(&h.name).map_err(|m| FieldError::new(&field, m))?;
        } else if h.name.is_empty() || h.name.contains(['&', '=', '#']) {
            return Err(FieldError::new(
                &field,
                format!("{:?} is not a valid query parameter name", h.name),
            ));
        }
        let name = if header {
            h.name.to_ascii_lowercase()
        } else {
            h.name.clone()
        };
        let value = ValueMatch::parse(h.kind.as_deref(), &h.value)
            .map_err(|m| FieldError::new(&field, m))?;
        if !out.iter().any(|m| m.name == name) {
            out.push(NamedMatch { name, value });
        }
    }
    Ok(out)
}

fn parents(refs: &[ParentRefSpec], route_ns: &str) -> Result<Vec<Parent>, FieldError> {
    let mut out = Vec::new();
    for (i, p) in refs.iter().enumerate() {
        let field = |f: &str| format!("spec.parentRefs[{i}].{f}");
        let port =
            match p.port {
                Some(port) => Some(u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(
                    || FieldError::new(field("port"), format!("{port} is not a port")),
                )?),
                None => None,
            };
        let namespace = p.namespace.clone().unwrap_or_else(|| route_ns.to_owned());
        let name = p.name.clone();
        if name.is_empty() {
            return Err(FieldError::new(field("name"), "a parent needs a name"));
        }
        let group = p.group.as_deref().unwrap_or("gateway.networking.k8s.io");
        match (group, p.kind.as_deref().unwrap_or("Gateway")) {
            ("" | "core", "Service") => out.push(Parent::Service {
                namespace,
                name,
                port,
            }),
            ("gateway.networking.k8s.io", "Gateway") => out.push(Parent::Gateway {
                namespace,
                name,
                port,
            }),
            // Other parents (ServiceEntry, other implementations' kinds) are not ours.
            _ => {}
        }
    }
    Ok(out)
}

fn hostnames(list: &[String]) -> Result<Vec<String>, FieldError> {
    list.iter()
        .enumerate()
        .map(|(i, h)| {
            let h = h.to_ascii_lowercase();
            let bare = h.strip_prefix("*.").unwrap_or(&h);
            names::dns_subdomain(bare)
                .map_err(|m| FieldError::new(format!("spec.hostnames[{i}]"), m))?;
            Ok(h)
        })
        .collect()
}
