//! What each kind of object feeds (which resources to recompute when it changes) and the translation of one
//! object against the rest of the index.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Dirty, Index, Resource, resource_name, workload_name};
use crate::objects::{Kind, Object, ObjectKey};
use crate::translate::service::{self, PodWorkload};
use crate::translate::{
    LABEL_GATEWAY_NAME, LABEL_SERVICE_NAME, Warning, l7, label, policy, workload,
};

/// Records what a change of `key` (from `old` to `new`) makes dirty.
pub(super) fn note(
    index: &Index,
    key: &ObjectKey,
    old: Option<&Object>,
    new: Option<&Object>,
    dirty: &mut Dirty,
) {
    let both = || old.into_iter().chain(new);
    match key.kind {
        Kind::Namespace => {
            dirty.namespaces.insert(key.name.clone());
        }
        Kind::Pod => {
            dirty.objects.insert(key.clone());
            let pods: Vec<&Pod> = both()
                .filter_map(|o| match o {
                    Object::Pod(p) => Some(&**p),
                    _ => None,
                })
                .collect();
            if pods
                .iter()
                .any(|p| label(&p.metadata, LABEL_GATEWAY_NAME).is_some())
            {
                dirty.waypoints = true;
            }
            for svc in index.objects_in(Kind::Service, &key.namespace) {
                let Object::Service(s) = svc else { continue };
                let sel = service::selector(s);
                if sel.is_empty()
                    || pods
                        .iter()
                        .any(|p| service::selects(&sel, p.metadata.labels.as_ref()))
                {
                    dirty.objects.insert(svc.key());
                }
            }
        }
        Kind::EndpointSlice => {
            for o in both() {
                if let Some(svc) = label(o.metadata(), LABEL_SERVICE_NAME) {
                    dirty
                        .objects
                        .insert(ObjectKey::new(Kind::Service, &key.namespace, svc));
                }
            }
        }
        Kind::Gateway => dirty.waypoints = true,
        Kind::Service
        | Kind::AuthorizationPolicy
        | Kind::PeerAuthentication
        | Kind::HttpRoute
        | Kind::GrpcRoute
        | Kind::HttpFault
        | Kind::ReferenceGrant
        | Kind::RequestAuthentication
        | Kind::VirtualService
        | Kind::DestinationRule => {
            dirty.objects.insert(key.clone());
        }
        // Read by the waypoint config and the CA, not by ztunnel resources.
        _ => {}
    }
}

/// What `key` translates to now (name and resource), with warnings.
pub(super) fn translate(
    index: &Index,
    key: &ObjectKey,
) -> (Option<(String, Resource)>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let Some(obj) = index.object(key) else {
        return (None, warnings);
    };
    let ns = namespace(index, &key.namespace);
    let out = match obj {
        Object::Pod(pod) => {
            let waypoint_pod = label(&pod.metadata, LABEL_GATEWAY_NAME)
                .is_some_and(|gw| index.waypoints.get(&key.namespace, gw).is_some());
            workload::workload(
                pod,
                ns,
                waypoint_pod,
                &index.waypoints,
                &index.opts,
                &mut warnings,
            )
            .map(|w| (workload_name(&w.uid), Resource::Workload(w)))
        }
        Object::Service(svc) => {
            let pods = pod_workloads(index, &key.namespace);
            let slices: Vec<&EndpointSlice> = index
                .objects_in(Kind::EndpointSlice, &key.namespace)
                .filter_map(|o| match o {
                    Object::EndpointSlice(s)
                        if label(&s.metadata, LABEL_SERVICE_NAME) == Some(&key.name) =>
                    {
                        Some(&**s)
                    }
                    _ => None,
                })
                .collect();
            service::service(svc, ns, &pods, &slices, &index.waypoints, &mut warnings).map(|s| {
                (
                    resource_name(Kind::Service, &key.namespace, &key.name),
                    Resource::Service(s),
                )
            })
        }
        Object::Generic(Kind::AuthorizationPolicy, p) => {
            policy::authorization_policy(p, &mut warnings).map(|p| {
                (
                    resource_name(Kind::AuthorizationPolicy, &key.namespace, &key.name),
                    Resource::AuthorizationPolicy(p),
                )
            })
        }
        Object::Generic(Kind::PeerAuthentication, p) => {
            policy::peer_authentication(p, &mut warnings).map(|p| {
                (
                    resource_name(Kind::PeerAuthentication, &key.namespace, &key.name),
                    Resource::PeerAuthentication(p),
                )
            })
        }
        Object::Generic(
            kind @ (Kind::HttpRoute
            | Kind::GrpcRoute
            | Kind::HttpFault
            | Kind::ReferenceGrant
            | Kind::RequestAuthentication
            | Kind::VirtualService
            | Kind::DestinationRule),
            o,
        ) => {
            // An invalid update keeps the version waypoints have in force (translate::l7).
            let name = resource_name(*kind, &key.namespace, &key.name);
            let previous = match index.resource(&name).map(|e| &*e.resource) {
                Some(Resource::L7Object(json)) => Some(json.as_str()),
                _ => None,
            };
            l7::l7_object(*kind, o, previous, &mut warnings)
                .map(|json| (name, Resource::L7Object(json)))
        }
        _ => None,
    };
    (out, warnings)
}

/// Gives `r` only the addresses (pod IPs, VIPs) no other object holds; returns it and the objects to recompute.
pub(super) fn claim_addresses(
    index: &mut Index,
    key: &ObjectKey,
    mut r: Resource,
) -> (Resource, std::collections::BTreeSet<ObjectKey>) {
    let addrs = match &mut r {
        Resource::Workload(w) => &mut w.addresses,
        Resource::Service(s) => &mut s.vips,
        _ => return (r, index.claims.release_all(key)),
    };
    let claimed = index.claims.claim(key, addrs);
    *addrs = claimed.granted;
    if !claimed.denied.is_empty() {
        let list = index.warnings.entry(key.clone()).or_default();
        for (ip, owner) in claimed.denied {
            let w = Warning::new(
                key.to_string(),
                format!("address {ip} is already used by {owner}; left out until it is released"),
            );
            tracing::warn!(object = %w.object, "{}", w.message);
            list.push(w);
        }
    }
    (r, claimed.wake)
}

/// Pods of `namespace` labelled as belonging to the Gateway `gateway`.
pub(super) fn waypoint_pods<'a>(index: &'a Index, namespace: &str, gateway: &str) -> Vec<&'a Pod> {
    index
        .objects_in(Kind::Pod, namespace)
        .filter_map(|o| match o {
            Object::Pod(p) if label(&p.metadata, LABEL_GATEWAY_NAME) == Some(gateway) => Some(&**p),
            _ => None,
        })
        .collect()
}

fn namespace<'a>(index: &'a Index, name: &str) -> Option<&'a Namespace> {
    match index.object(&ObjectKey::new(Kind::Namespace, "", name)) {
        Some(Object::Namespace(n)) => Some(n),
        _ => None,
    }
}

/// The pods of `namespace` with their current workloads.
fn pod_workloads<'a>(index: &'a Index, namespace: &str) -> Vec<PodWorkload<'a>> {
    index
        .objects_in(Kind::Pod, namespace)
        .filter_map(|o| match o {
            Object::Pod(p) => {
                let w = index
                    .produced
                    .get(&o.key())
                    .and_then(|n| index.resources.get(n))
                    .and_then(|e| match &*e.resource {
                        Resource::Workload(w) => Some(w),
                        _ => None,
                    });
                Some((&**p, w))
            }
            _ => None,
        })
        .collect()
}
