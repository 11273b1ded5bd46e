//! What each proxy needs. Every proxy gets every workload and service (any of them can be a destination; the
//! identity of a destination is checked). Beyond that:
//! - a ztunnel: only the authorization policies and peer authentications that apply to workloads on its node
//!   (they are enforced at the destination); waypoint (`targetRefs`) policies never;
//! - a waypoint: the authorization policies of its namespace, of the namespaces of the services it serves and of
//!   the root namespace (including `targetRefs` ones), and the L7 objects (HTTPRoute, GRPCRoute) whose parent is
//!   its Gateway or a service it serves, with the HTTPFaults of their namespaces and the ReferenceGrants of the
//!   other namespaces whose Services they send to, and the RequestAuthentications, VirtualServices and
//!   DestinationRules of those namespaces.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::Workload;

use crate::index::grants::service_refs;
use crate::index::{Entry, Index, Resource};
use crate::objects::{Kind, Object, ObjectKey};

/// Who a stream serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscriber {
    /// The ztunnel of a node.
    Node(String),
    /// The waypoint of Gateway (namespace, name).
    Waypoint(String, String),
}

/// The scoped (non-global) resources `sub` needs, by name.
pub fn scoped<'a>(index: &'a Index, sub: &Subscriber) -> BTreeMap<&'a str, &'a Entry> {
    match sub {
        Subscriber::Node(node) => node_policies(index, node),
        Subscriber::Waypoint(ns, name) => waypoint_resources(index, ns, name),
    }
}

/// What the waypoint `ns/name` needs beyond workloads and services (see the module docs).
pub fn waypoint_resources<'a>(
    index: &'a Index,
    ns: &str,
    name: &str,
) -> BTreeMap<&'a str, &'a Entry> {
    let root = index.options().root_namespace.as_str();
    let address = index.waypoints().get(ns, name).and_then(|w| w.address);
    let served: BTreeSet<(&str, &str)> = index
        .resources()
        .filter_map(|(_, e)| match &*e.resource {
            Resource::Service(s) if address.is_some() && s.waypoint == address => {
                Some((s.namespace.as_str(), s.name.as_str()))
            }
            _ => None,
        })
        .collect();
    let mut namespaces: BTreeSet<&str> = served.iter().map(|(n, _)| *n).collect();
    namespaces.insert(ns);
    namespaces.insert(root);
    let mut out = BTreeMap::new();
    let mut route_namespaces = BTreeSet::new();
    let mut backend_namespaces = BTreeSet::new();
    for (rname, e) in index.resources() {
        let wanted = match &*e.resource {
            Resource::AuthorizationPolicy(p) => namespaces.contains(p.namespace.as_str()),
            Resource::L7Object(_) => {
                let Some(key) = l7_key(rname) else { continue };
                match key.kind {
                    Kind::HttpRoute | Kind::GrpcRoute => {}
                    Kind::HttpFault | Kind::ReferenceGrant => continue,
                    _ => {
                        if namespaces.contains(key.namespace.as_str()) {
                            out.insert(rname.as_str(), e);
                        }
                        continue;
                    }
                }
                let attached = parents(index, &key).any(|(kind, pns, pname)| match kind.as_str() {
                    "Gateway" => pns == ns && pname == name,
                    "Service" => served.contains(&(pns.as_str(), pname.as_str())),
                    _ => false,
                });
                if attached {
                    if let Some(Object::Generic(_, g)) = index.object(&key) {
                        // Only other namespaces: a reference within the route's own needs no grant.
                        let refs = service_refs(&g.spec, &key.namespace);
                        backend_namespaces.extend(
                            refs.into_iter()
                                .map(|(ns, _)| ns)
                                .filter(|ns| *ns != key.namespace),
                        );
                    }
                    route_namespaces.insert(key.namespace.clone());
                }
                attached
            }
            _ => false,
        };
        if wanted {
            out.insert(rname.as_str(), e);
        }
    }
    for (rname, e) in index
        .resources()
        .filter(|(n, _)| n.starts_with("l7/httpfault/"))
    {
        if l7_key(rname).is_some_and(|k| route_namespaces.contains(&k.namespace)) {
            out.insert(rname.as_str(), e);
        }
    }
    for (rname, e) in index.resources_with_prefix("l7/referencegrant/") {
        if l7_key(rname).is_some_and(|k| backend_namespaces.contains(&k.namespace)) {
            out.insert(rname.as_str(), e);
        }
    }
    out
}

/// The object key behind an `l7/<kind>/<ns>/<name>` resource name.
fn l7_key(name: &str) -> Option<ObjectKey> {
    let mut it = name.strip_prefix("l7/")?.splitn(3, '/');
    let kind = match it.next()? {
        "httproute" => Kind::HttpRoute,
        "grpcroute" => Kind::GrpcRoute,
        "httpfault" => Kind::HttpFault,
        "referencegrant" => Kind::ReferenceGrant,
        "requestauthentication" => Kind::RequestAuthentication,
        "virtualservice" => Kind::VirtualService,
        "destinationrule" => Kind::DestinationRule,
        _ => return None,
    };
    Some(ObjectKey::new(kind, it.next()?, it.next()?))
}

/// (kind, namespace, name) of the parents of route `key` (kind defaults to Gateway, namespace to the route's).
fn parents<'a>(
    index: &'a Index,
    key: &'a ObjectKey,
) -> impl Iterator<Item = (String, String, String)> + 'a {
    let refs = match index.object(key) {
        Some(Object::Generic(_, g)) => g.spec.get("parentRefs").and_then(|v| v.as_array()),
        _ => None,
    };
    refs.into_iter().flatten().map(move |p| {
        let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
        (
            s("kind").unwrap_or_else(|| "Gateway".into()),
            s("namespace").unwrap_or_else(|| key.namespace.clone()),
            s("name").unwrap_or_default(),
        )
    })
}

/// The policy resources (`authz/...`, `peerauth/...`) ztunnel on `node` needs, by name.
pub fn node_policies<'a>(index: &'a Index, node: &str) -> BTreeMap<&'a str, &'a Entry> {
    let root = index.options().root_namespace.as_str();
    let local: Vec<&Workload> = index.workloads_on_node(node).collect();
    let namespaces: BTreeSet<&str> = local.iter().map(|w| w.namespace.as_str()).collect();
    let applies = |ns: &str, selects: &dyn Fn(&Workload) -> bool| {
        local
            .iter()
            .any(|w| (ns == root || w.namespace == ns) && selects(w))
    };
    let mut out = BTreeMap::new();
    for (name, e) in index
        .resources()
        .filter(|(n, _)| n.starts_with("authz/") || n.starts_with("peerauth/"))
    {
        let wanted = match &*e.resource {
            Resource::AuthorizationPolicy(p) => {
                !p.is_waypoint_policy()
                    && (namespaces.contains(p.namespace.as_str()) || p.namespace == root)
                    && applies(&p.namespace, &|w| {
                        p.selector.as_ref().is_none_or(|s| s.matches(&w.labels))
                    })
            }
            // Root-namespace PeerAuthentications without selector are mesh-wide.
            Resource::PeerAuthentication(p) => {
                (p.namespace == root && p.selector.is_none())
                    || (namespaces.contains(p.namespace.as_str())
                        && applies(&p.namespace, &|w| {
                            p.selector.as_ref().is_none_or(|s| s.matches(&w.labels))
                        }))
            }
            _ => false,
        };
        if wanted {
            out.insert(name.as_str(), e);
        }
    }
    out
}

/// Whether a change of resource `name` can change `sub`'s scoped set: any policy or L7 object; for a ztunnel a
/// workload that is gone or on its node (pods never change node); for a waypoint any service or workload
/// (which services it serves depends on them).
pub fn affects_scope(index: &Index, sub: &Subscriber, name: &str) -> bool {
    if !is_global(name) {
        return true;
    }
    match sub {
        Subscriber::Waypoint(..) => true,
        Subscriber::Node(node) => match index.resource(name).map(|e| &*e.resource) {
            None => name.starts_with("workload/"),
            Some(Resource::Workload(w)) => &w.node == node,
            Some(_) => false,
        },
    }
}

/// Whether a workload or service resource goes to every ztunnel.
pub fn is_global(name: &str) -> bool {
    name.starts_with("workload/") || name.starts_with("service/")
}

#[cfg(test)]
mod tests;
