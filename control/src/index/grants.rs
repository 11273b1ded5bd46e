//! Cross-namespace references of routes and the ReferenceGrants that allow them: which grants a waypoint needs
//! (those of the namespaces its routes send to) and which references no grant allows (route status
//! `RefNotPermitted`). Grants count as waypoints have them (the index's resources), read with the waypoint's own
//! code (`mesh_api::l7::Grant`), so status and routing agree.

use std::collections::BTreeSet;

use mesh_api::l7::{
    self, BackendTarget, ConvertContext, Filter, Grant, Grants, L7Object, Route, RouteKind, convert,
};
use serde_json::Value;

use super::{Index, Resource, resource_name};
use crate::objects::{Generic, Kind};
use crate::translate::l7::json_of;
use crate::translate::ns_name;

/// Every Service a route spec refers to, as (namespace, name): its rules' backendRefs and the backendRefs of
/// its `RequestMirror` filters (rule and backend level). References to other kinds are left out.
pub fn service_refs(spec: &Value, route_ns: &str) -> Vec<(String, String)> {
    let list = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut refs: Vec<Value> = Vec::new();
    for rule in list(spec, "rules") {
        let backends = list(&rule, "backendRefs");
        let filters = std::iter::once(&rule)
            .chain(backends.iter())
            .flat_map(|v| list(v, "filters"));
        refs.extend(filters.filter_map(|f| f.pointer("/requestMirror/backendRef").cloned()));
        refs.extend(backends);
    }
    refs.iter()
        .filter(|b| {
            let s = |k: &str| b.get(k).and_then(Value::as_str);
            matches!(s("group"), None | Some("" | "core"))
                && s("kind").is_none_or(|k| k == "Service")
        })
        .filter_map(|b| {
            let name = b.get("name").and_then(Value::as_str)?;
            let ns = b
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(route_ns);
            Some((ns.to_string(), name.to_string()))
        })
        .collect()
}

/// The route kind of `kind` as the waypoint's grants know it (`None`: not a Gateway API route).
pub fn route_kind(kind: Kind) -> Option<RouteKind> {
    match kind {
        Kind::HttpRoute => Some(RouteKind::Http),
        Kind::GrpcRoute => Some(RouteKind::Grpc),
        _ => None,
    }
}

/// Adds the grants of `namespace` that waypoints have to `grants`.
pub fn add_grants_in(index: &Index, namespace: &str, grants: &mut Grants) {
    // `l7/referencegrant/<namespace>/`
    let prefix = resource_name(Kind::ReferenceGrant, namespace, "");
    for (_, e) in index.resources_with_prefix(&prefix) {
        let Resource::L7Object(json) = &*e.resource else {
            continue;
        };
        let parsed = serde_json::from_str(json)
            .map_err(|e| e.to_string())
            .and_then(l7::object_from_json);
        if let Ok(L7Object::ReferenceGrant(g)) = parsed
            && let Ok(grant) = Grant::from_object(&g)
        {
            grants.insert(grant);
        }
    }
}

/// The Services (`namespace/name`) the route `route` of `kind` refers to that the waypoint refuses with
/// `RefNotPermitted` given the grants waypoints have: the route is converted with the waypoint's own code, so
/// the answer is the waypoint's (exemptions included). Requests routed to them are answered 500. Empty for a
/// route the waypoint rejects as a whole (reported as such).
pub fn not_permitted(index: &Index, kind: Kind, route: &Generic) -> Vec<String> {
    let Some(route_kind) = route_kind(kind) else {
        return Vec::new();
    };
    let (ns, _) = ns_name(&route.metadata);
    let refs: Vec<(String, String)> = service_refs(&route.spec, ns)
        .into_iter()
        .filter(|(bns, _)| bns != ns)
        .collect();
    if refs.is_empty() {
        return Vec::new();
    }
    let mut ctx = ConvertContext::default();
    let namespaces: BTreeSet<&str> = refs.iter().map(|(bns, _)| bns.as_str()).collect();
    for bns in namespaces {
        add_grants_in(index, bns, &mut ctx.grants);
    }
    let converted = match l7::object_from_json(json_of(kind, route)) {
        Ok(L7Object::HttpRoute(r)) => convert::http_route(&r, &ctx),
        Ok(L7Object::GrpcRoute(r)) => convert::grpc_route(&r, &ctx),
        _ => return Vec::new(),
    };
    let Ok(converted) = converted else {
        return Vec::new();
    };
    let reasons: BTreeSet<&str> = invalid_targets(&converted).collect();
    let mut out: Vec<String> = Vec::new();
    for (bns, name) in refs {
        let refused = Grants::refused(route_kind, ns, &bns, &name);
        let r = format!("{bns}/{name}");
        if reasons.contains(refused.as_str()) && !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// The reasons of the invalid backends and mirrors of `route`.
fn invalid_targets(route: &Route) -> impl Iterator<Item = &str> {
    route.rules.iter().flat_map(|rule| {
        let filters = rule
            .filters
            .iter()
            .chain(rule.backends.iter().flat_map(|b| b.filters.iter()));
        let mirrors = filters.filter_map(|f| match f {
            Filter::RequestMirror(m) => Some(&m.backend),
            _ => None,
        });
        rule.backends
            .iter()
            .map(|b| &b.target)
            .chain(mirrors)
            .filter_map(|t| match t {
                BackendTarget::Invalid { reason } => Some(reason.as_str()),
                BackendTarget::Service { .. } => None,
            })
    })
}
