//! End-to-end test of `meshctl local down` after a component crashed while pods ran (DESIGN.md
//! 7: `down` removes everything it made "also after any component crashed"): for the pod
//! runtime, the cluster DNS and a node agent in turn, a cluster runs a Deployment spread over
//! both nodes, the component is SIGKILLed, and `down` must leave no namespace with the
//! cluster's prefix, no process of the cluster (components and the pods' containers, which the
//! dead runtime no longer supervises) and no `/etc/netns` dir of the cluster.

// Helpers of an integration test: clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mesh_testbed::bin_path;
use serde_json::Value;

/// How long the pods may take to run (generous: 2 busy cores).
const WAIT: Duration = Duration::from_secs(60);

/// A state dir whose cluster is torn down when the test ends, even when it fails.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn up() -> Self {
        let c = Cluster {
            dir: tempfile::Builder::new()
                .prefix("meshctl-crash-e2e-")
                .tempdir()
                .unwrap(),
        };
        let out = c.meshctl(&["local", "up", "--nodes", "2"]);
        assert!(out.status.success(), "up failed: {}", text(&out.stderr));
        c
    }

    fn meshctl(&self, args: &[&str]) -> Output {
        Command::new(bin_path("meshctl"))
            .args(args)
            .arg("--state")
            .arg(self.dir.path())
            .output()
            .unwrap()
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("state.json")).unwrap()).unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("logs/{name}.log")))
            .unwrap_or_default()
    }

    /// Pods Running with an address.
    fn running(&self) -> usize {
        let out = self.meshctl(&["local", "get", "pods", "-o", "json"]);
        assert!(out.status.success(), "get pods: {}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .count()
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

fn netns_pids(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

fn etc_netns_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      containers:
      - name: main
        command: [sleep, infinity]
";

fn crash_then_down(component: &str) {
    let c = Cluster::up();
    let file = c.dir.path().join("sleeper.yaml");
    std::fs::write(&file, DEPLOYMENT).unwrap();
    let out = c.meshctl(&["local", "apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    let deadline = Instant::now() + WAIT;
    while c.running() < 4 {
        assert!(
            Instant::now() < deadline,
            "pods not running; runtime log:\n{}",
            c.log("runtime")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = c.state();
    let prefix = format!("meshctl-{}-", state["id"].as_str().unwrap());
    let pods: Vec<String> = netns_with(&format!("{prefix}pod-"));
    assert_eq!(pods.len(), 4, "pod namespaces: {pods:?}");
    assert!(
        !etc_netns_with(&prefix).is_empty(),
        "pods have /etc/netns dirs"
    );
    // Every process of the cluster: recorded components and the pods' containers.
    let mut pids: Vec<u32> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| u32::try_from(p["pid"].as_u64().unwrap()).unwrap())
        .collect();
    let containers: Vec<u32> = pods.iter().flat_map(|ns| netns_pids(ns)).collect();
    assert!(containers.len() >= 4, "container processes: {containers:?}");
    pids.extend(containers);
    let victim = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == component)
        .and_then(|p| p["pid"].as_u64())
        .unwrap();
    let kill = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let victim = u32::try_from(victim).unwrap();
    let deadline = Instant::now() + WAIT;
    while alive(victim) {
        assert!(Instant::now() < deadline, "{component} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }

    let down = c.meshctl(&["local", "down"]);
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(200));
    let left: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(
        left.is_empty(),
        "processes left after down ({component} crashed): {left:?}"
    );
    assert_eq!(etc_netns_with(&prefix), Vec::<String>::new());
}

#[test]
fn down_cleans_up_pods_after_the_runtime_crashed() {
    crash_then_down("runtime");
}

#[test]
fn down_cleans_up_pods_after_the_dns_crashed() {
    crash_then_down("dns");
}

#[test]
fn down_cleans_up_pods_after_a_node_agent_crashed() {
    crash_then_down("agent-node-2");
}
