//! Services -> mesh services: VIPs, TCP ports with their target ports (named ports resolved on the endpoint
//! pods), endpoints and waypoint.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mesh_api::{Service, ServicePort, Workload};

use super::workload::pod_ready;
use super::{LABEL_GATEWAY_NAME, Warning, Waypoints, label, ns_name, parse_ip};

/// A pod of the service's namespace and its workload (if it is one).
pub type PodWorkload<'a> = (&'a Pod, Option<&'a Workload>);

/// `Service <ns>/<name>`, for warnings.
pub fn service_object(svc: &KubeService) -> String {
    let (ns, name) = ns_name(&svc.metadata);
    format!("Service {ns}/{name}")
}

/// Whether `labels` carry every entry of `selector` (an empty selector selects nothing, as in Kubernetes).
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The service's selector (empty when absent).
pub fn selector(svc: &KubeService) -> BTreeMap<String, String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// Translates `svc`. `pods`: the pods of its namespace with their workloads; `slices`: the EndpointSlices of the
/// service (used when it has no selector). `None` for kinds the mesh does not proxy (ExternalName).
pub fn service(
    svc: &KubeService,
    ns: Option<&Namespace>,
    pods: &[PodWorkload<'_>],
    slices: &[&EndpointSlice],
    waypoints: &Waypoints,
    warnings: &mut Vec<Warning>,
) -> Option<Service> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let (namespace, name) = ns_name(&svc.metadata);
    let object = service_object(svc);
    let sel = selector(svc);
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut endpoints: Vec<(&Pod, &Workload)> = if sel.is_empty() {
        slice_endpoints(slices, pods)
    } else {
        pods.iter()
            .filter(|(p, _)| selects(&sel, p.metadata.labels.as_ref()))
            .filter(|(p, _)| publish_not_ready || pod_ready(p))
            .filter_map(|(p, w)| Some((*p, (*w)?)))
            .collect()
    };
    endpoints.sort_by(|a, b| a.1.uid.cmp(&b.1.uid));
    endpoints.dedup_by(|a, b| a.1.uid == b.1.uid);
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().is_none_or(|proto| proto == "TCP"))
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok().filter(|p| *p != 0)?;
            let target_port = match &p.target_port {
                None => port,
                Some(IntOrString::Int(i)) => u16::try_from(*i).ok().filter(|p| *p != 0).unwrap_or(port),
                Some(IntOrString::String(named)) => match named_port(named, &endpoints) {
                    Some(t) => t,
                    None => {
                        if !endpoints.is_empty() {
                            warnings.push(Warning::new(
                                &object,
                                format!("port {port}: no endpoint pod declares a container port named {named:?}; \
                                         port left out"),
                            ));
                        }
                        return None;
                    }
                },
            };
            Some(ServicePort {
                port,
                target_port,
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    // A waypoint's own Service never goes through a waypoint.
    let is_waypoint_service = label(&svc.metadata, LABEL_GATEWAY_NAME).is_some();
    let waypoint = (!is_waypoint_service)
        .then(|| waypoints.for_service(&svc.metadata, ns.map(|n| &n.metadata), warnings))
        .flatten();
    let s = Service {
        name: name.to_string(),
        namespace: namespace.to_string(),
        hostname: mesh_api::model::service_hostname(name, namespace),
        vips: vips(svc, warnings),
        ports,
        endpoints: endpoints.iter().map(|(_, w)| w.uid.clone()).collect(),
        waypoint,
    };
    match s.validate() {
        Ok(()) => Some(s),
        Err(e) => {
            warnings.push(Warning::new(
                object,
                format!("not a valid service, skipped: {e}"),
            ));
            None
        }
    }
}

/// Cluster IPs (`clusterIPs`, else `clusterIP`); headless (`None`) has none.
fn vips(svc: &KubeService, warnings: &mut Vec<Warning>) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let mut raw: Vec<&str> = spec
        .cluster_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if raw.is_empty() {
        raw.extend(spec.cluster_ip.as_deref());
    }
    let mut out = Vec::new();
    for s in raw.into_iter().filter(|s| !s.is_empty() && *s != "None") {
        match parse_ip(s) {
            Some(ip) if !out.contains(&ip) => out.push(ip),
            Some(_) => {}
            None => warnings.push(Warning::new(
                service_object(svc),
                format!("cluster IP {s:?} is not an address"),
            )),
        }
    }
    out
}

/// The container port named `name` on the endpoint pods (the first pod declaring it, in uid order).
fn named_port(name: &str, endpoints: &[(&Pod, &Workload)]) -> Option<u16> {
    endpoints.iter().find_map(|(pod, _)| {
        let containers = &pod.spec.as_ref()?.containers;
        containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
    })
}

/// Endpoints of a selector-less service: the slices' endpoints that name a pod (`targetRef`) and are not marked
/// not-ready. Addresses without a pod are not representable as workloads and are left out.
fn slice_endpoints<'a>(
    slices: &[&EndpointSlice],
    pods: &[PodWorkload<'a>],
) -> Vec<(&'a Pod, &'a Workload)> {
    let mut out = Vec::new();
    for ep in slices.iter().flat_map(|s| s.endpoints.iter()) {
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        let Some(target) = ep
            .target_ref
            .as_ref()
            .filter(|t| t.kind.as_deref() == Some("Pod"))
        else {
            continue;
        };
        let found = pods
            .iter()
            .find(|(p, _)| p.metadata.name == target.name)
            .and_then(|(p, w)| Some((*p, (*w)?)));
        out.extend(found);
    }
    out
}
