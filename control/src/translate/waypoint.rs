//! Waypoints: which Gateways of class `istio-waypoint` exist, what they serve, where they listen, and which
//! waypoint a service or workload uses (`istio.io/use-waypoint` precedence, see the parent module).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mesh_api::WaypointRef;

use super::{
    LABEL_USE_WAYPOINT, LABEL_USE_WAYPOINT_NAMESPACE, LABEL_WAYPOINT_FOR, WAYPOINT_CLASS, label,
    ns_name,
};
use super::{Warning, parse_ip, workload::pod_ready};
use crate::objects::Gateway;

/// What traffic a waypoint takes (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaypointFor {
    /// Traffic addressed to services (Istio's default).
    #[default]
    Service,
    /// Traffic addressed to workloads (pod IPs).
    Workload,
    /// Both.
    All,
    /// Neither.
    None,
}

impl WaypointFor {
    /// Parses the label value; unknown values are Istio's default (`service`).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("workload") => Self::Workload,
            Some("all") => Self::All,
            Some("none") => Self::None,
            _ => Self::Service,
        }
    }

    fn serves_services(self) -> bool {
        matches!(self, Self::Service | Self::All)
    }

    fn serves_workloads(self) -> bool {
        matches!(self, Self::Workload | Self::All)
    }
}

/// One waypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaypointInfo {
    /// What it serves.
    pub serves: WaypointFor,
    /// Where ztunnels send HBONE: a ready waypoint pod's address (lowest pod name), else any of its pods', else
    /// an IP of the Gateway's `status.addresses`. `None` while the waypoint has no address yet.
    pub address: Option<WaypointRef>,
}

/// Every waypoint, by (namespace, name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waypoints {
    by_name: BTreeMap<(String, String), WaypointInfo>,
}

impl Waypoints {
    /// The waypoints among `gateways`; `pods_of(namespace, gateway)` lists the pods labelled with the gateway's
    /// name (`gateway.networking.k8s.io/gateway-name`).
    pub fn build<'a, F, I>(gateways: impl IntoIterator<Item = &'a Gateway>, pods_of: F) -> Self
    where
        F: Fn(&str, &str) -> I,
        I: IntoIterator<Item = &'a Pod>,
    {
        let mut by_name = BTreeMap::new();
        for gw in gateways.into_iter().filter(|g| is_waypoint(g)) {
            let (ns, name) = ns_name(&gw.metadata);
            let port = gw
                .spec
                .listeners
                .iter()
                .find(|l| l.protocol == "HBONE")
                .map_or(mesh_api::model::DEFAULT_WAYPOINT_PORT, |l| l.port);
            let mut pods: Vec<&Pod> = pods_of(ns, name).into_iter().collect();
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let pod_ip = |p: &&Pod| p.status.as_ref()?.pod_ip.as_deref().and_then(parse_ip);
            let address = pods
                .iter()
                .filter(|p| pod_ready(p))
                .find_map(pod_ip)
                .or_else(|| pods.iter().find_map(pod_ip))
                .or_else(|| {
                    let status = gw.status.as_ref()?;
                    status.addresses.iter().find_map(|a| parse_ip(&a.value))
                });
            let info = WaypointInfo {
                serves: WaypointFor::parse(label(&gw.metadata, LABEL_WAYPOINT_FOR)),
                address: address.map(|address| WaypointRef { address, port }),
            };
            by_name.insert((ns.to_string(), name.to_string()), info);
        }
        Self { by_name }
    }

    /// The waypoint `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&WaypointInfo> {
        self.by_name.get(&(namespace.to_string(), name.to_string()))
    }

    /// Every waypoint, by (namespace, name).
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &WaypointInfo)> {
        self.by_name.iter()
    }

    /// The waypoint of a service (`svc`), following the service's labels, else its namespace's.
    pub fn for_service(
        &self,
        svc: &ObjectMeta,
        ns: Option<&ObjectMeta>,
        warnings: &mut Vec<Warning>,
    ) -> Option<WaypointRef> {
        self.resolve(svc, ns, "Service", WaypointFor::serves_services, warnings)
    }

    /// The waypoint of a workload (`pod`), following the pod's labels, else its namespace's.
    pub fn for_workload(
        &self,
        pod: &ObjectMeta,
        ns: Option<&ObjectMeta>,
        warnings: &mut Vec<Warning>,
    ) -> Option<WaypointRef> {
        self.resolve(pod, ns, "Pod", WaypointFor::serves_workloads, warnings)
    }

    fn resolve(
        &self,
        obj: &ObjectMeta,
        ns: Option<&ObjectMeta>,
        kind: &str,
        serves: fn(WaypointFor) -> bool,
        warnings: &mut Vec<Warning>,
    ) -> Option<WaypointRef> {
        let (obj_ns, obj_name) = ns_name(obj);
        // The most specific object carrying the label decides, `none` included.
        let (holder, name) = [Some(obj), ns]
            .into_iter()
            .flatten()
            .find_map(|m| label(m, LABEL_USE_WAYPOINT).map(|v| (m, v)))?;
        if name == "none" || name.is_empty() {
            return None;
        }
        let wp_ns = label(holder, LABEL_USE_WAYPOINT_NAMESPACE).unwrap_or(obj_ns);
        let object = format!("{kind} {obj_ns}/{obj_name}");
        let Some(info) = self.get(wp_ns, name) else {
            warnings.push(Warning::new(
                object,
                format!(
                    "uses waypoint {wp_ns}/{name}, but no Gateway of class {WAYPOINT_CLASS} has that name; \
                     traffic goes direct until it exists"
                ),
            ));
            return None;
        };
        if !serves(info.serves) {
            return None;
        }
        if info.address.is_none() {
            warnings.push(Warning::new(
                object,
                format!("waypoint {wp_ns}/{name} has no address yet (no pod with an IP, no status address)"),
            ));
        }
        info.address
    }
}

/// Whether `gw` is a waypoint (class `istio-waypoint`).
pub fn is_waypoint(gw: &Gateway) -> bool {
    gw.spec.gateway_class_name == WAYPOINT_CLASS
}
