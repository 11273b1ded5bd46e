//! Pods -> workloads.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use mesh_api::{Protocol, Workload};

use super::{ANNOTATION_REDIRECTION, Options, Warning, Waypoints, labels, ns_name, parse_ip};

/// Whether the pod takes traffic: its `Ready` condition, or, when it has no conditions at all (hand-written
/// objects, local mode before probes ran), having an address. Terminating pods are never ready.
pub fn pod_ready(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = &pod.status else {
        return false;
    };
    match status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
    {
        Some(c) => c.status == "True",
        None => status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()),
    }
}

/// Whether the pod is gone for good (`Succeeded`/`Failed`): its address may already belong to another pod.
pub fn pod_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the pod shares the node's network (such pods are never workloads: they cannot be captured and their
/// address is the node's).
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The uid a pod's workload has: the Kubernetes UID, else `<namespace>/<name>` (hand-written objects, the uid the
/// local config file uses too).
pub fn pod_uid(pod: &Pod) -> String {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => {
            let (ns, name) = ns_name(&pod.metadata);
            format!("{ns}/{name}")
        }
    }
}

/// The pod's addresses (`status.podIPs`, else `status.podIP`), canonical and deduplicated.
pub fn pod_addresses(pod: &Pod, warnings: &mut Vec<Warning>) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut raw: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .collect();
    if raw.is_empty() {
        raw.extend(status.pod_ip.as_deref());
    }
    let mut out = Vec::new();
    for s in raw.into_iter().filter(|s| !s.is_empty()) {
        match parse_ip(s) {
            Some(ip) if !out.contains(&ip) => out.push(ip),
            Some(_) => {}
            None => warnings.push(Warning::new(
                pod_object(pod),
                format!("pod IP {s:?} is not an address; skipped"),
            )),
        }
    }
    out
}

/// `Pod <ns>/<name>`, for warnings.
pub fn pod_object(pod: &Pod) -> String {
    let (ns, name) = ns_name(&pod.metadata);
    format!("Pod {ns}/{name}")
}

/// The workload of `pod` in namespace `ns`; `None` for pods that are not workloads (host network, finished) or
/// are invalid (a warning says why). `waypoint_pod`: the pod belongs to a waypoint (enrolled, never redirected
/// to a waypoint itself).
pub fn workload(
    pod: &Pod,
    ns: Option<&Namespace>,
    waypoint_pod: bool,
    waypoints: &Waypoints,
    opts: &Options,
    warnings: &mut Vec<Warning>,
) -> Option<Workload> {
    if host_network(pod) || pod_terminal(pod) {
        return None;
    }
    let meta = &pod.metadata;
    let (namespace, name) = ns_name(meta);
    let redirected = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REDIRECTION))
        .is_some_and(|v| v == "enabled");
    let enrolled = redirected || waypoint_pod;
    let waypoint = (enrolled && !waypoint_pod)
        .then(|| waypoints.for_workload(meta, ns.map(|n| &n.metadata), warnings))
        .flatten();
    let spec = pod.spec.as_ref();
    let w = Workload {
        uid: pod_uid(pod),
        name: name.to_string(),
        namespace: namespace.to_string(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string()),
        node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        addresses: pod_addresses(pod, warnings),
        labels: labels(meta).into(),
        protocol: if enrolled {
            Protocol::Hbone
        } else {
            Protocol::Tcp
        },
        waypoint,
        trust_domain: opts.trust_domain.clone(),
    };
    match w.validate() {
        Ok(()) => Some(w),
        Err(e) => {
            warnings.push(Warning::new(
                pod_object(pod),
                format!("not a valid workload, skipped: {e}"),
            ));
            None
        }
    }
}
