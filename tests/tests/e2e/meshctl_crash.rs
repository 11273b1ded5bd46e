//! End-to-end test of `meshctl local down` after a component crashed while pods ran (DESIGN.md
//! 7: `down` removes everything it made "also after any component crashed"): for the pod
//! runtime, the cluster DNS and a node agent in turn, a cluster runs a Deployment spread over
//! both nodes, the component is SIGKILLed, and `down` must leave no namespace with the
//! cluster's prefix, no process of the cluster (components and the pods' containers, which the
//! dead runtime no longer supervises) and no `/etc/netns` dir of the cluster.

// Helpers of an integration test: clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use mesh_testbed::local::{
    LocalCluster, WAIT, alive, etc_netns_with, netns_pids, netns_with, state_processes, text,
};

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
    let c = LocalCluster::started("crash", 2);
    c.apply("sleeper.yaml", DEPLOYMENT);
    c.wait_running(4);
    let state = c.state_json();
    let prefix = format!("meshctl-{}-", state["id"].as_str().unwrap());
    let pods: Vec<String> = netns_with(&format!("{prefix}pod-"));
    assert_eq!(pods.len(), 4, "pod namespaces: {pods:?}");
    assert!(
        !etc_netns_with(&prefix).is_empty(),
        "pods have /etc/netns dirs"
    );
    // Every process of the cluster: recorded components and the pods' containers.
    let processes = state_processes(&state);
    let mut pids: Vec<u32> = processes.iter().map(|(_, pid)| *pid).collect();
    let containers: Vec<u32> = pods.iter().flat_map(|ns| netns_pids(ns)).collect();
    assert!(containers.len() >= 4, "container processes: {containers:?}");
    pids.extend(containers);
    let victim = processes
        .iter()
        .find(|(name, _)| name == component)
        .map(|(_, pid)| *pid)
        .unwrap();
    let kill = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + WAIT;
    while alive(victim) {
        assert!(Instant::now() < deadline, "{component} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }

    let down = c.down();
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
