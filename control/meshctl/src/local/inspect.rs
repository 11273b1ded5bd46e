//! Read-only verbs of local mode: `get nodes` (a table or Kubernetes-shaped JSON) and `logs`.

use std::path::Path;

use super::network::{node_ip, node_name, node_netns, pod_cidr};
use super::state::ClusterState;
use super::{LocalError, io, sys};

/// Errors of the read-only verbs.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No cluster in the state directory.
    #[error(
        "no local cluster in state directory {0}; start one with `meshctl local up --state {0}`"
    )]
    NotUp(String),
    /// Unknown component for `logs`.
    #[error("no component {name:?} in this cluster; known: {known}")]
    UnknownComponent {
        /// What was asked for.
        name: String,
        /// The components that exist.
        known: String,
    },
}

fn load(dir: &Path) -> Result<ClusterState, LocalError> {
    ClusterState::load(dir)?.ok_or_else(|| InspectError::NotUp(dir.display().to_string()).into())
}

/// The state of the cluster in `dir`, or an error saying how to start one.
pub fn cluster(dir: &Path) -> Result<ClusterState, LocalError> {
    load(dir)
}

/// Whether component `name` of `state` is running.
fn running(state: &ClusterState, name: &str) -> bool {
    state
        .processes
        .iter()
        .any(|p| p.name == name && sys::alive(p.pid) && sys::runs(p.pid, &p.exe))
}

/// The nodes of the cluster in `dir`: a table (`NAME NETNS IP POD-CIDR ZTUNNEL AGENT`) or, with
/// `json`, a Kubernetes-shaped `List` of `Node` objects.
pub fn get_nodes(dir: &Path, json: bool) -> Result<String, LocalError> {
    let state = load(dir)?;
    let status = |name: String| {
        if running(&state, &name) {
            "Running"
        } else {
            "NotRunning"
        }
    };
    if json {
        let items: Vec<serde_json::Value> = (1..=state.nodes)
            .map(|n| {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node_name(n),
                        "annotations": {"meshctl.local/netns": node_netns(&state.id, n)},
                    },
                    "spec": {"podCIDR": pod_cidr(n)},
                    "status": {
                        "addresses": [{"type": "InternalIP", "address": node_ip(n).to_string()}],
                        "conditions": [{
                            "type": "Ready",
                            "status": if running(&state, &format!("ztunnel-{}", node_name(n)))
                                && running(&state, &format!("agent-{}", node_name(n))) { "True" } else { "False" },
                        }],
                    },
                })
            })
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        return serde_json::to_string_pretty(&list)
            .map(|t| t + "\n")
            .map_err(|e| io("render JSON")(std::io::Error::other(e)));
    }
    let mut out = format!(
        "{:<10} {:<28} {:<14} {:<14} {:<11} {}\n",
        "NAME", "NETNS", "IP", "POD-CIDR", "ZTUNNEL", "AGENT"
    );
    for n in 1..=state.nodes {
        let name = node_name(n);
        out.push_str(&format!(
            "{:<10} {:<28} {:<14} {:<14} {:<11} {}\n",
            name,
            node_netns(&state.id, n),
            node_ip(n),
            pod_cidr(n),
            status(format!("ztunnel-{name}")),
            status(format!("agent-{name}")),
        ));
    }
    Ok(out)
}

/// The log of component `name` (`control`, `ztunnel-node-1`, `agent-node-2`).
pub fn logs(dir: &Path, name: &str) -> Result<String, LocalError> {
    let state = load(dir)?;
    if let Some((ns, pod)) = name.split_once('/') {
        let path = dir.join("logs").join(format!("pod-{ns}-{pod}.log"));
        return std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                io(format!(
                    "read the log of pod {name} (no such pod has run; see `meshctl local get pods`)"
                ))(e)
            } else {
                io(format!("read {}", path.display()))(e)
            }
        });
    }
    let Some(p) = state.processes.iter().find(|p| p.name == name) else {
        let known: Vec<&str> = state.processes.iter().map(|p| p.name.as_str()).collect();
        return Err(InspectError::UnknownComponent {
            name: name.to_owned(),
            known: known.join(", "),
        }
        .into());
    };
    std::fs::read_to_string(&p.log).map_err(io(format!("read {}", p.log.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::state::ProcessRecord;

    fn cluster(dir: &Path) -> ClusterState {
        let log = dir.join("control.log");
        std::fs::write(&log, "mesh-control serving\n").unwrap();
        let s = ClusterState {
            id: "feed0001".into(),
            nodes: 2,
            ready: true,
            processes: vec![ProcessRecord {
                name: "control".into(),
                pid: std::process::id(),
                exe: std::env::current_exe().unwrap(),
                netns: "meshctl-feed0001-node-1".into(),
                log,
            }],
            ..ClusterState::default()
        };
        s.save(dir).unwrap();
        s
    }

    #[test]
    fn nodes_table_starts_with_name_and_json_is_kubernetes_shaped() {
        let dir = tempfile::tempdir().unwrap();
        cluster(dir.path());
        let table = get_nodes(dir.path(), false).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[2].starts_with("node-2") && lines[2].contains("meshctl-feed0001-node-2"));
        assert!(
            lines[1].contains("NotRunning"),
            "no ztunnel recorded: {table}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&get_nodes(dir.path(), true).unwrap()).unwrap();
        assert_eq!(v["items"][0]["metadata"]["name"], "node-1");
        assert_eq!(
            v["items"][1]["status"]["addresses"][0]["address"],
            "172.30.0.2"
        );
        assert_eq!(v["items"][1]["spec"]["podCIDR"], "10.2.0.0/24");
    }

    #[test]
    fn logs_reads_a_component_and_names_the_known_ones_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        cluster(dir.path());
        assert!(logs(dir.path(), "control").unwrap().contains("serving"));
        let e = logs(dir.path(), "ztunnel-node-9").unwrap_err().to_string();
        assert!(e.contains("known: control"), "{e}");
    }

    #[test]
    fn verbs_without_a_cluster_say_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = get_nodes(dir.path(), false).unwrap_err().to_string();
        assert!(e.contains("meshctl local up"), "{e}");
    }
}
