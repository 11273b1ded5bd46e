//! The waypoint Gateway: its manifest (DESIGN.md 5), what `list` shows of it, and the table.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde::Serialize;

use super::WaypointError;

/// Gateway class of waypoints.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Label on the Gateway naming the traffic it handles.
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";
/// Label on a namespace, service or pod naming its waypoint.
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// Field manager of meshctl's server-side applies.
pub const FIELD_MANAGER: &str = "meshctl";
/// Listener of a waypoint: name, port, protocol (DESIGN.md 5).
const LISTENER: (&str, u16, &str) = ("mesh", 15008, "HBONE");

/// Traffic a waypoint handles (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaypointFor {
    /// Traffic addressed to services (Istio's default).
    Service,
    /// Traffic addressed to workloads (pod IPs).
    Workload,
    /// Both.
    All,
}

impl std::fmt::Display for WaypointFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Service => "service",
            Self::Workload => "workload",
            Self::All => "all",
        })
    }
}

/// The Gateways API of `namespace` (every namespace with `None`).
pub fn gateways_api(client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "gateways");
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// The waypoint Gateway `namespace/name` as applied (only the fields meshctl owns).
pub fn gateway_manifest(namespace: &str, name: &str, for_: WaypointFor) -> serde_json::Value {
    let (lname, port, protocol) = LISTENER;
    serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {WAYPOINT_FOR_LABEL: for_.to_string()},
        },
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            "listeners": [{"name": lname, "port": port, "protocol": protocol}],
        },
    })
}

/// A name must be a DNS label (it names a Deployment, Service and ServiceAccount too).
pub(super) fn validate_name(name: &str) -> Result<(), WaypointError> {
    mesh_api::model::names::dns_label(name).map_err(|reason| WaypointError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// `spec.gatewayClassName` of a Gateway (empty when absent).
pub(super) fn class_of(gw: &DynamicObject) -> &str {
    gw.data["spec"]["gatewayClassName"].as_str().unwrap_or("")
}

/// A waypoint as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaypointInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `istio.io/waypoint-for` (`service` when absent, as in Istio).
    pub waypoint_for: String,
    /// Status of the `Programmed` condition (`True`, `False`, `Unknown` when absent).
    pub programmed: String,
    /// First address in the status, if any.
    pub address: Option<String>,
    /// The Gateway object as read.
    #[serde(skip)]
    pub object: serde_json::Value,
}

impl WaypointInfo {
    /// The waypoint view of `gw`, or `None` when it is not of class `istio-waypoint`.
    pub fn from_gateway(gw: &DynamicObject) -> Option<Self> {
        if class_of(gw) != WAYPOINT_CLASS {
            return None;
        }
        let labels = gw.metadata.labels.as_ref();
        let status = &gw.data["status"];
        let programmed = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Programmed")
            .and_then(|c| c["status"].as_str())
            .unwrap_or("Unknown");
        Some(Self {
            namespace: gw.metadata.namespace.clone().unwrap_or_default(),
            name: gw.metadata.name.clone().unwrap_or_default(),
            waypoint_for: labels
                .and_then(|l| l.get(WAYPOINT_FOR_LABEL))
                .cloned()
                .unwrap_or_else(|| WaypointFor::Service.to_string()),
            programmed: programmed.to_owned(),
            address: status["addresses"][0]["value"].as_str().map(str::to_owned),
            object: serde_json::to_value(gw).unwrap_or_default(),
        })
    }
}

/// `NAMESPACE` (with `all_namespaces`) `NAME FOR PROGRAMMED ADDRESS`, or a note when empty.
pub fn render_table(waypoints: &[WaypointInfo], all_namespaces: bool) -> String {
    if waypoints.is_empty() {
        return "no waypoints found\n".to_owned();
    }
    let mut rows = vec![vec![
        "NAMESPACE".to_owned(),
        "NAME".to_owned(),
        "FOR".to_owned(),
        "PROGRAMMED".to_owned(),
        "ADDRESS".to_owned(),
    ]];
    for w in waypoints {
        rows.push(vec![
            w.namespace.clone(),
            w.name.clone(),
            w.waypoint_for.clone(),
            w.programmed.clone(),
            w.address.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    if !all_namespaces {
        rows.iter_mut().for_each(|r| _ = r.remove(0));
    }
    crate::ztunnel_cmd::table::render(&rows)
}

/// The Gateway objects as a Kubernetes `List`.
pub fn render_json(waypoints: &[WaypointInfo]) -> String {
    let items: Vec<&serde_json::Value> = waypoints.iter().map(|w| &w.object).collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_manifest_is_a_waypoint_gateway_of_design_5() {
        let m = gateway_manifest("shop", "wp", WaypointFor::Workload);
        assert_eq!(m["spec"]["gatewayClassName"], "istio-waypoint");
        assert_eq!(
            m["spec"]["listeners"],
            serde_json::json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}])
        );
        assert_eq!(m["metadata"]["labels"]["istio.io/waypoint-for"], "workload");
        assert_eq!(m["metadata"]["namespace"], "shop");
    }

    #[test]
    fn only_waypoint_gateways_are_listed_with_for_and_programmed() {
        let wp = gw(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "waypoint", "namespace": "shop"},
            "spec": {"gatewayClassName": "istio-waypoint"},
            "status": {"addresses": [{"value": "10.96.0.20"}],
                       "conditions": [{"type": "Accepted", "status": "True"},
                                      {"type": "Programmed", "status": "False"}]}
        }));
        let info = WaypointInfo::from_gateway(&wp).unwrap();
        assert_eq!(
            (info.waypoint_for.as_str(), info.programmed.as_str()),
            ("service", "False")
        );
        assert_eq!(info.address.as_deref(), Some("10.96.0.20"));
        let ingress = gw(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "shop"},
            "spec": {"gatewayClassName": "istio"}
        }));
        assert!(WaypointInfo::from_gateway(&ingress).is_none());
        let table = render_table(std::slice::from_ref(&info), false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("PROGRAMMED"));
        assert!(lines[1].starts_with("waypoint") && lines[1].contains("10.96.0.20"));
        let all = render_table(&[info], true);
        assert!(all.starts_with("NAMESPACE"), "{all}");
        assert_eq!(render_table(&[], false), "no waypoints found\n");
    }

    #[test]
    fn the_command_lines_parse() {
        use crate::cli::{Cli, Command};
        use crate::waypoint::WaypointCommand;
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["meshctl", "waypoint"], args].concat());
        let cli = parse(&[
            "apply",
            "-n",
            "shop",
            "--for",
            "workload",
            "--enroll-namespace",
            "--context",
            "kind",
        ])
        .unwrap();
        let Command::Waypoint(WaypointCommand::Apply(a)) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(a.namespace.as_deref(), Some("shop"));
        assert_eq!(
            (a.name.as_str(), a.for_, a.enroll_namespace),
            ("waypoint", WaypointFor::Workload, true)
        );
        assert_eq!(a.kube.context.as_deref(), Some("kind"));
        let cli = parse(&["list", "-A", "-o", "json"]).unwrap();
        assert!(
            matches!(cli.command, Command::Waypoint(WaypointCommand::List(l)) if l.all_namespaces)
        );
        let cli = parse(&["delete", "--name", "wp", "-n", "shop"]).unwrap();
        assert!(
            matches!(cli.command, Command::Waypoint(WaypointCommand::Delete(d)) if d.name == "wp")
        );
        assert!(parse(&["apply", "--for", "everything"]).is_err());
        assert!(parse(&["list", "-n", "shop", "-A"]).is_err());
    }

    #[test]
    fn names_must_be_dns_labels() {
        assert!(validate_name("waypoint").is_ok());
        let e = validate_name("Bad_Name").unwrap_err().to_string();
        assert!(e.contains("Bad_Name"), "{e}");
    }
}
