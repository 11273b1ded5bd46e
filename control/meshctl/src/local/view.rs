//! `meshctl local get pods|services|workloads` (a table whose first columns are NAMESPACE and
//! NAME, or a Kubernetes-shaped JSON `List`) and `meshctl local exec <ns>/<pod> -- CMD...`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::objects::Key;
use super::runtime::pod_netns;
use super::store::{self, ANNOTATION_REDIRECTION};
use super::{LocalError, inspect, io, sys};

/// What `get` lists besides nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Pods.
    Pods,
    /// Services.
    Services,
    /// Pods as mesh workloads.
    Workloads,
}

/// Errors of `exec`.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Not `<ns>/<pod>`.
    #[error("{0:?} is not <namespace>/<pod>")]
    PodRef(String),
    /// No such pod or not running.
    #[error("pod {0} is not running (see `meshctl local get pods`)")]
    NotRunning(String),
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn restarts(p: &Value) -> u64 {
    p.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |c| {
            c.iter().filter_map(|c| c["restartCount"].as_u64()).sum()
        })
}

fn enrolled(p: &Value) -> bool {
    p.pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_REDIRECTION))
        .is_some_and(|v| v == "enabled")
}

fn or_dash(v: &str) -> &str {
    if v.is_empty() { "-" } else { v }
}

/// Renders rows as a table with columns padded to the widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cols {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The listing of `what` in `namespace` (all namespaces when `None`).
pub fn get(
    dir: &Path,
    what: Listing,
    namespace: Option<&str>,
    json_out: bool,
) -> Result<String, LocalError> {
    inspect::cluster(dir)?;
    let objects = store::load(dir)?;
    let kind = if what == Listing::Services {
        "Service"
    } else {
        "Pod"
    };
    let items: Vec<&Value> = objects.of_kind(kind, namespace).collect();
    if json_out {
        let items: Vec<Value> = items
            .iter()
            .map(|o| {
                if what == Listing::Workloads {
                    workload(o)
                } else {
                    (*o).clone()
                }
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        return serde_json::to_string_pretty(&list)
            .map(|t| t + "\n")
            .map_err(|e| io("render JSON")(std::io::Error::other(e)));
    }
    let mut rows = vec![match what {
        Listing::Pods => [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "IP",
            "NODE",
        ]
        .map(String::from)
        .to_vec(),
        Listing::Services => ["NAMESPACE", "NAME", "CLUSTER-IP", "PORTS", "SELECTOR"]
            .map(String::from)
            .to_vec(),
        Listing::Workloads => [
            "NAMESPACE",
            "NAME",
            "IP",
            "NODE",
            "PROTOCOL",
            "SERVICE-ACCOUNT",
        ]
        .map(String::from)
        .to_vec(),
    }];
    for o in items {
        let (ns, name) = (s(o, "/metadata/namespace"), s(o, "/metadata/name"));
        let mut row = vec![ns.to_owned(), name.to_owned()];
        match what {
            Listing::Pods => {
                let phase = if o.pointer("/metadata/deletionTimestamp").is_some() {
                    "Terminating"
                } else {
                    or_dash(s(o, "/status/phase"))
                };
                row.extend([
                    if ready(o) { "1/1" } else { "0/1" }.to_owned(),
                    phase.to_owned(),
                    restarts(o).to_string(),
                    or_dash(s(o, "/status/podIP")).to_owned(),
                    or_dash(s(o, "/spec/nodeName")).to_owned(),
                ]);
            }
            Listing::Services => {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                    .collect();
                let selector: Vec<String> = o
                    .pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                row.extend([
                    or_dash(s(o, "/spec/clusterIP")).to_owned(),
                    or_dash(&ports.join(",")).to_owned(),
                    or_dash(&selector.join(",")).to_owned(),
                ]);
            }
            Listing::Workloads => {
                let w = workload(o);
                row.extend([
                    or_dash(s(&w, "/status/podIP")).to_owned(),
                    or_dash(s(&w, "/spec/nodeName")).to_owned(),
                    s(&w, "/spec/protocol").to_owned(),
                    s(&w, "/spec/serviceAccountName").to_owned(),
                ]);
            }
        }
        rows.push(row);
    }
    Ok(table(&rows))
}

/// A pod as a mesh workload: HBONE when the CNI enrolled it (annotation), TCP otherwise.
fn workload(p: &Value) -> Value {
    let sa = or_dash(s(p, "/spec/serviceAccountName"));
    let sa = if sa == "-" { "default" } else { sa };
    json!({
        "apiVersion": "v1",
        "kind": "Workload",
        "metadata": {"name": s(p, "/metadata/name"), "namespace": s(p, "/metadata/namespace"), "uid": s(p, "/metadata/uid")},
        "spec": {
            "nodeName": s(p, "/spec/nodeName"),
            "serviceAccountName": sa,
            "protocol": if enrolled(p) { "HBONE" } else { "TCP" },
            "identity": format!("spiffe://cluster.local/ns/{}/sa/{sa}", s(p, "/metadata/namespace")),
        },
        "status": {"podIP": s(p, "/status/podIP"), "phase": s(p, "/status/phase"), "ready": ready(p)},
    })
}

/// Resolves `<ns>/<pod>` to the pod's key.
pub fn pod_key(target: &str) -> Result<Key, ViewError> {
    let (ns, name) = target
        .split_once('/')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('/'))
        .ok_or_else(|| ViewError::PodRef(target.into()))?;
    Ok(Key {
        kind: "Pod".into(),
        namespace: ns.into(),
        name: name.into(),
    })
}

/// Runs `command` in the netns and DNS view of pod `target` (`ip netns exec`, which bind-mounts
/// `/etc/netns/<netns>/resolv.conf`) with the environment of the pod's first container and
/// stdio inherited; returns its exit code.
pub fn exec(dir: &Path, target: &str, command: &[String]) -> Result<i32, LocalError> {
    let state = inspect::cluster(dir)?;
    let key = pod_key(target).map_err(|e| io("exec")(std::io::Error::other(e)))?;
    let objects = store::load(dir)?;
    let netns = pod_netns(&state.id, &key.namespace, &key.name);
    let running = objects
        .get(&key)
        .is_some_and(|p| s(p, "/status/phase") == "Running");
    if !running || !sys::netns_list().contains(&netns) {
        return Err(io("exec")(std::io::Error::other(ViewError::NotRunning(
            target.into(),
        ))));
    }
    let ctx = super::runtime::Ctx::load(dir)?;
    let env = objects
        .get(&key)
        .and_then(|p| super::sandbox::exec_env(&ctx, p))
        .unwrap_or_default();
    let status = Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(command)
        .env_clear()
        .envs(env)
        .status()
        .map_err(io(format!("run {:?} in pod {target}", command.join(" "))))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_refs_need_namespace_and_name() {
        assert_eq!(pod_key("shop/web").unwrap().name, "web");
        assert!(pod_key("web").is_err());
        assert!(pod_key("/web").is_err());
        assert!(pod_key("a/b/c").is_err());
    }

    #[test]
    fn tables_start_with_namespace_and_name() {
        let t = table(&[
            vec!["NAMESPACE".into(), "NAME".into(), "IP".into()],
            vec!["shop".into(), "web-abcde".into(), "10.1.0.2".into()],
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME"));
        assert!(lines[1].starts_with("shop        web-abcde"));
    }

    #[test]
    fn workloads_say_whether_the_cni_enrolled_the_pod() {
        let p = json!({"metadata": {"name": "a", "namespace": "n", "annotations": {ANNOTATION_REDIRECTION: "enabled"}},
            "spec": {"nodeName": "node-1"}, "status": {"podIP": "10.1.0.3"}});
        let w = workload(&p);
        assert_eq!(w["spec"]["protocol"], "HBONE");
        assert_eq!(
            w["spec"]["identity"],
            "spiffe://cluster.local/ns/n/sa/default"
        );
    }
}
