//! What the node agent knows about pods and namespaces, and the enrolment decision of
//! DESIGN.md 5 (a pure function, so it is tested without any cluster).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::rules::RedirectOptions;

/// Label (namespace or pod) that puts workloads in the ambient mesh.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// Value of [`DATAPLANE_MODE_LABEL`] that enrols.
pub const DATAPLANE_MODE_AMBIENT: &str = "ambient";
/// Value of [`DATAPLANE_MODE_LABEL`] that keeps a pod out even in an ambient namespace.
pub const DATAPLANE_MODE_NONE: &str = "none";
/// Annotation the agent puts on every enrolled pod.
pub const REDIRECTION_ANNOTATION: &str = "ambient.istio.io/redirection";
/// Value of [`REDIRECTION_ANNOTATION`] on an enrolled pod.
pub const REDIRECTION_ENABLED: &str = "enabled";
/// Label Istio puts on waypoint pods it manages (our waypoint deployer sets it too).
pub const WAYPOINT_MANAGED_LABEL: &str = "gateway.istio.io/managed";
/// Value of [`WAYPOINT_MANAGED_LABEL`] on waypoint pods.
pub const WAYPOINT_MANAGED_VALUE: &str = "istio.io-mesh-controller";
/// Gateway API label on pods of a Gateway, naming its class.
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";
/// The waypoint gateway class.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Annotation of pods that run an Istio sidecar: they are never captured by ambient.
pub const SIDECAR_STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// Pod annotation (Istio's): `"true"` leaves the pod's inbound traffic uncaptured.
pub const BYPASS_INBOUND_ANNOTATION: &str = "ambient.istio.io/bypass-inbound-capture";
/// Pod annotation (Istio's): `"true"` leaves the pod's DNS uncaptured even when the agent captures DNS.
pub const BYPASS_DNS_ANNOTATION: &str = "ambient.istio.io/bypass-dns-capture";

/// A pod as the agent's source reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodMeta {
    /// Kubernetes UID.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (the pod's identity); `default` when empty.
    pub service_account: String,
    /// The node it is scheduled on.
    pub node_name: String,
    /// Runs in the node's network namespace.
    pub host_network: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Pod IPs (status.podIPs) if known.
    pub ips: Vec<IpAddr>,
    /// The pod finished (phase Succeeded or Failed): its sandbox is gone.
    pub terminated: bool,
}

impl PodMeta {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The service account, `default` when unset (as Kubernetes does).
    pub fn service_account(&self) -> &str {
        if self.service_account.is_empty() {
            "default"
        } else {
            &self.service_account
        }
    }

    /// The agent's rule options `base` as this pod's annotations narrow them
    /// ([`BYPASS_INBOUND_ANNOTATION`], [`BYPASS_DNS_ANNOTATION`]; only the value `true` counts).
    pub fn capture(&self, base: RedirectOptions) -> RedirectOptions {
        let set = |key: &str| self.annotations.get(key).is_some_and(|v| v == "true");
        RedirectOptions {
            dns_capture: base.dns_capture && !set(BYPASS_DNS_ANNOTATION),
            bypass_inbound: base.bypass_inbound || set(BYPASS_INBOUND_ANNOTATION),
        }
    }
}

/// A namespace as the agent's source reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamespaceMeta {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Why a pod is or is not in the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The pod's own label says ambient.
    EnrolledByPodLabel,
    /// Its namespace's label says ambient (and the pod does not opt out).
    EnrolledByNamespace,
    /// The pod's label says none.
    OptedOut,
    /// hostNetwork pods share the node's netns: capturing there would capture the node.
    HostNetwork,
    /// Waypoints are proxies of the mesh themselves.
    Waypoint,
    /// The pod runs an Istio sidecar.
    Sidecar,
    /// The pod finished.
    Terminated,
    /// Neither pod nor namespace asks for ambient.
    NotSelected,
}

impl Decision {
    /// Whether the pod must be captured.
    pub fn enrolled(self) -> bool {
        matches!(
            self,
            Decision::EnrolledByPodLabel | Decision::EnrolledByNamespace
        )
    }
}

/// The enrolment decision of DESIGN.md 5: hostNetwork and waypoint pods never; the pod's
/// `istio.io/dataplane-mode` wins over the namespace's.
pub fn decide(pod: &PodMeta, namespace: Option<&NamespaceMeta>) -> Decision {
    if pod.host_network {
        return Decision::HostNetwork;
    }
    if pod.terminated {
        return Decision::Terminated;
    }
    let label = |k: &str| pod.labels.get(k).map(String::as_str);
    if label(WAYPOINT_MANAGED_LABEL) == Some(WAYPOINT_MANAGED_VALUE)
        || label(GATEWAY_CLASS_LABEL) == Some(WAYPOINT_CLASS)
    {
        return Decision::Waypoint;
    }
    if pod.annotations.contains_key(SIDECAR_STATUS_ANNOTATION) {
        return Decision::Sidecar;
    }
    match label(DATAPLANE_MODE_LABEL) {
        Some(DATAPLANE_MODE_AMBIENT) => return Decision::EnrolledByPodLabel,
        Some(DATAPLANE_MODE_NONE) => return Decision::OptedOut,
        _ => {}
    }
    let ns_mode = namespace.and_then(|ns| ns.labels.get(DATAPLANE_MODE_LABEL));
    if ns_mode.map(String::as_str) == Some(DATAPLANE_MODE_AMBIENT) {
        Decision::EnrolledByNamespace
    } else {
        Decision::NotSelected
    }
}

/// An event of a [`super::source::PodSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// A pod on this node was added or changed.
    Pod(PodMeta),
    /// A pod (by uid) was deleted.
    PodDeleted(String),
    /// A namespace was added or changed.
    Namespace(NamespaceMeta),
    /// A namespace was deleted.
    NamespaceDeleted(String),
    /// The source delivered its complete initial state (pods not named so far do not exist).
    Synced,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            uid: "u".into(),
            name: "p".into(),
            namespace: "ns".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PodMeta::default()
        }
    }

    fn ns(mode: Option<&str>) -> NamespaceMeta {
        NamespaceMeta {
            name: "ns".into(),
            labels: mode
                .map(|m| (DATAPLANE_MODE_LABEL.to_string(), m.to_string()))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn pod_label_wins_over_namespace() {
        let ambient = ns(Some("ambient"));
        let plain = ns(None);
        assert_eq!(
            decide(&pod(&[]), Some(&ambient)),
            Decision::EnrolledByNamespace
        );
        assert_eq!(decide(&pod(&[]), Some(&plain)), Decision::NotSelected);
        assert_eq!(decide(&pod(&[]), None), Decision::NotSelected);
        let opted_out = pod(&[(DATAPLANE_MODE_LABEL, "none")]);
        assert_eq!(decide(&opted_out, Some(&ambient)), Decision::OptedOut);
        let opted_in = pod(&[(DATAPLANE_MODE_LABEL, "ambient")]);
        assert_eq!(
            decide(&opted_in, Some(&plain)),
            Decision::EnrolledByPodLabel
        );
        assert_eq!(
            decide(&opted_in, Some(&ns(Some("none")))),
            Decision::EnrolledByPodLabel
        );
        // An unknown pod value defers to the namespace.
        let odd = pod(&[(DATAPLANE_MODE_LABEL, "sidecar")]);
        assert_eq!(decide(&odd, Some(&ambient)), Decision::EnrolledByNamespace);
    }

    #[test]
    fn host_network_waypoints_sidecars_and_finished_pods_are_never_enrolled() {
        let ambient = ns(Some("ambient"));
        let opted_in = [(DATAPLANE_MODE_LABEL, "ambient")];
        let mut host = pod(&opted_in);
        host.host_network = true;
        assert_eq!(decide(&host, Some(&ambient)), Decision::HostNetwork);
        let wp = pod(&[(WAYPOINT_MANAGED_LABEL, WAYPOINT_MANAGED_VALUE)]);
        assert_eq!(decide(&wp, Some(&ambient)), Decision::Waypoint);
        let wp2 = pod(&[(GATEWAY_CLASS_LABEL, WAYPOINT_CLASS), opted_in[0]]);
        assert_eq!(decide(&wp2, Some(&ambient)), Decision::Waypoint);
        let mut sidecar = pod(&[]);
        sidecar
            .annotations
            .insert(SIDECAR_STATUS_ANNOTATION.into(), "{}".into());
        assert_eq!(decide(&sidecar, Some(&ambient)), Decision::Sidecar);
        let mut done = pod(&opted_in);
        done.terminated = true;
        assert!(!decide(&done, Some(&ambient)).enrolled());
    }

    #[test]
    fn annotations_narrow_the_capture_of_one_pod() {
        let dns = RedirectOptions {
            dns_capture: true,
            ..Default::default()
        };
        let annotated = |pairs: &[(&str, &str)]| PodMeta {
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PodMeta::default()
        };
        assert_eq!(annotated(&[]).capture(dns), dns);
        let inbound = annotated(&[(BYPASS_INBOUND_ANNOTATION, "true")]).capture(dns);
        assert!(inbound.bypass_inbound && inbound.dns_capture);
        let no_dns = annotated(&[(BYPASS_DNS_ANNOTATION, "true")]).capture(dns);
        assert!(!no_dns.dns_capture && !no_dns.bypass_inbound);
        let other = annotated(&[
            (BYPASS_INBOUND_ANNOTATION, "yes"),
            (BYPASS_DNS_ANNOTATION, "false"),
        ]);
        assert_eq!(other.capture(dns), dns, "only `true` bypasses");
        assert!(
            !annotated(&[(BYPASS_DNS_ANNOTATION, "true")])
                .capture(RedirectOptions::default())
                .dns_capture,
            "an annotation never turns DNS capture on"
        );
    }
}
