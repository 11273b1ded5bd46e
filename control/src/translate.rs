//! Translation: Kubernetes objects -> the proxy config model of `mesh-api` (DESIGN.md 5). Pure functions: no
//! I/O, no async; the [`crate::index`] calls them for the objects a change touches.
//!
//! Semantics follow Istio ambient:
//! - a pod is enrolled (protocol HBONE) when the CNI annotated it `ambient.istio.io/redirection: enabled`, or
//!   when it is a waypoint's own pod (it terminates HBONE itself); otherwise it is plain TCP;
//! - `istio.io/use-waypoint` (and `istio.io/use-waypoint-namespace`) on a pod applies to traffic addressed to
//!   the pod, on a service to traffic addressed to the service, on a namespace to both; the most specific
//!   object carrying the label wins, and `none` opts out. The waypoint's `istio.io/waypoint-for` (default
//!   `service`) decides whether it serves services, workloads, all or none;
//! - invalid policies fail closed (see [`policy`]).

pub mod l7;
pub mod policy;
pub mod service;
pub mod waypoint;
pub mod workload;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use waypoint::{WaypointFor, WaypointInfo, Waypoints};

/// Pod annotation the CNI sets once it has redirected the pod's traffic (DESIGN.md 5).
pub const ANNOTATION_REDIRECTION: &str = "ambient.istio.io/redirection";
/// Label (namespace, service, pod) naming the waypoint to use, or `none`.
pub const LABEL_USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Label naming the namespace of the waypoint of `istio.io/use-waypoint` (default: the labelled object's).
pub const LABEL_USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
/// Label of a waypoint Gateway: `service` (default), `workload`, `all` or `none`.
pub const LABEL_WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Label on a waypoint's pods and Service naming their Gateway.
pub const LABEL_GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// GatewayClass of waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// EndpointSlice label naming its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Settings of a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Namespace whose policies are mesh-wide.
    pub root_namespace: String,
    /// Trust domain of workload identities.
    pub trust_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root_namespace: mesh_api::model::DEFAULT_ROOT_NAMESPACE.to_string(),
            trust_domain: mesh_api::model::DEFAULT_TRUST_DOMAIN.to_string(),
        }
    }
}

/// Something translation skipped or corrected, for the operator (logged, shown in control's debug dump).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// The object concerned, e.g. `Pod shop/web-1`.
    pub object: String,
    /// What happened and what to check.
    pub message: String,
}

impl Warning {
    /// A warning about `object`.
    pub fn new(object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// Labels of `meta` (empty map when absent).
pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The value of label `key` of `meta`.
pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// `namespace/name` of `meta`.
pub fn ns_name(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// Parses an address as Kubernetes writes it (`10.0.0.1`, `fd00::1`), canonical form.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests;
