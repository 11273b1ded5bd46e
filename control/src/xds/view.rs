//! What a ztunnel needs: every workload and service (any of them can be a destination of its pods; ztunnel
//! checks the destination identity), but only the authorization policies and peer authentications that apply
//! to workloads on its node (they are enforced at the destination). Waypoint (`targetRefs`) policies are never
//! sent to ztunnels.

use std::collections::{BTreeMap, BTreeSet};

use mesh_api::Workload;

use crate::index::{Entry, Index, Resource};

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

/// Whether a workload or service resource goes to every ztunnel.
pub fn is_global(name: &str) -> bool {
    name.starts_with("workload/") || name.starts_with("service/")
}
