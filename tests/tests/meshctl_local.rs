//! End-to-end tests of `meshctl local` (DESIGN.md 7) through the real `meshctl` binary: `up`
//! builds node namespaces joined by a fabric with control, a node agent and a ztunnel per node;
//! `up` twice is refused; `down` leaves no namespace and no process, also after components
//! crashed and the state file was lost; not being root is a clear error. Pods (see
//! `meshctl_pods.rs`) are applied, run, reached across nodes through ztunnel and deleted.

// Helpers of an integration test: clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mesh_testbed::bin_path;

/// A state dir whose cluster is torn down when the test ends, even when it fails.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("meshctl-local-e2e-")
            .tempdir()
            .unwrap();
        Cluster { dir }
    }

    fn state(&self) -> &Path {
        self.dir.path()
    }

    fn meshctl(&self, args: &[&str]) -> Output {
        Command::new(bin_path("meshctl"))
            .args(args)
            .arg("--state")
            .arg(self.state())
            .output()
            .unwrap()
    }

    fn state_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.state().join("state.json")).unwrap()).unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.meshctl(&["local", "down"]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn netns_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Alive and not a zombie (a killed process may wait a moment for its reaper).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

fn pids(state: &serde_json::Value) -> Vec<(String, u64)> {
    state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["pid"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn in_netns(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

fn up(c: &Cluster) -> serde_json::Value {
    let out = c.meshctl(&["local", "up", "--nodes", "2"]);
    assert!(
        out.status.success(),
        "up failed: {}\n{}",
        text(&out.stderr),
        c.log("control")
    );
    c.state_json()
}

#[test]
fn up_builds_two_ready_nodes_refuses_a_second_up_and_down_leaves_nothing() {
    let c = Cluster::new();
    let state = up(&c);
    let id = state["id"].as_str().unwrap().to_owned();
    let prefix = format!("meshctl-{id}-");
    let names = netns_with(&prefix);
    for node in ["node-1", "node-2"] {
        let ns = names
            .iter()
            .find(|n| n.ends_with(node))
            .unwrap_or_else(|| panic!("no netns for {node} in {names:?}"));
        assert_eq!(in_netns(ns, &["sysctl", "-n", "net.ipv4.ip_forward"]), "1");
        // The node's ztunnel is ready in the node's namespace (DESIGN.md 7).
        let code = in_netns(
            ns,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://127.0.0.1:15021/healthz/ready",
            ],
        );
        assert_eq!(
            code,
            "200",
            "ztunnel of {node} not ready:\n{}",
            c.log(&format!("ztunnel-{node}"))
        );
    }
    // Node 2 reaches control on node 1 over the fabric.
    let ns2 = format!("{prefix}node-2");
    let reach = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns2,
            "bash",
            "-c",
            "exec 3<>/dev/tcp/172.30.0.1/15012",
        ])
        .status()
        .unwrap();
    assert!(
        reach.success(),
        "control unreachable from node-2 over the fabric"
    );
    let procs = pids(&state);
    for name in [
        "control",
        "runtime",
        "agent-node-1",
        "agent-node-2",
        "ztunnel-node-1",
        "ztunnel-node-2",
    ] {
        assert!(procs.iter().any(|(n, _)| n == name), "no {name}: {procs:?}");
    }
    let get = c.meshctl(&["local", "get", "nodes", "-o", "json"]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    let nodes: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["metadata"]["name"], "node-2");
    assert_eq!(items[1]["status"]["conditions"][0]["status"], "True");
    let logs = c.meshctl(&["local", "logs", "control"]);
    assert!(text(&logs.stdout).contains("mesh-control serving"));
    assert!(procs.iter().all(|(_, p)| alive(*p)), "{procs:?}");

    let again = c.meshctl(&["local", "up", "--nodes", "2"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already up"),
        "{}",
        text(&again.stderr)
    );
    assert!(
        procs.iter().all(|(_, p)| alive(*p)),
        "a refused up must not touch the cluster"
    );

    let down = c.meshctl(&["local", "down"]);
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    let left: Vec<_> = procs.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(!c.state().join("state.json").exists());

    // The state dir is free again.
    let state = up(&c);
    assert_eq!(pids(&state).len(), procs.len());
}

#[test]
fn down_cleans_up_after_crashed_components_and_a_lost_state_file() {
    let c = Cluster::new();
    let state = up(&c);
    let prefix = format!("meshctl-{}-", state["id"].as_str().unwrap());
    let procs = pids(&state);
    // Crash control and a ztunnel, then lose the state file: down must still sweep by prefix.
    for (name, pid) in &procs {
        if name == "control" || name == "ztunnel-node-1" {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    std::fs::remove_file(c.state().join("state.json")).unwrap();
    let down = c.meshctl(&["local", "down"]);
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let left: Vec<_> = procs.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
}

#[test]
fn up_without_root_says_root_is_needed_and_creates_nothing() {
    let c = Cluster::new();
    let state: PathBuf = c.state().to_path_buf();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin_path("meshctl"))
        .args(["local", "up", "--nodes", "1", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("needs root"),
        "{}",
        text(&out.stderr)
    );
    assert!(!state.join("state.json").exists());
}

#[test]
fn up_with_a_missing_mesh_binary_names_the_build_command_and_creates_nothing() {
    let c = Cluster::new();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path("meshctl"))
        .env("MESHCTL_BIN_DIR", empty.path())
        .args(["local", "up", "--nodes", "1", "--state"])
        .arg(c.state())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cargo build --bin mesh-control"), "{err}");
    assert!(!c.state().join("state.json").exists());
}
