//! End-to-end tests of `meshctl local` (DESIGN.md 7) through the real `meshctl` binary: `up`
//! builds node namespaces joined by a fabric with control, a node agent and a ztunnel per node;
//! `up` twice is refused; `down` leaves no namespace and no process, also after components
//! crashed and the state file was lost, and when a test holding the `LocalCluster` guard panics;
//! not being root is a clear error. Pods (see `meshctl_pods.rs`) are applied, run, reached across
//! nodes through ztunnel and deleted.

// Helpers of an integration test: clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use mesh_testbed::local::{
    LocalCluster, alive, in_netns, meshctl_bin, netns_with, state_processes, text,
};

fn sh_in_netns(ns: &str, args: &[&str]) -> String {
    text(&in_netns(ns, args).stdout).trim().to_owned()
}

#[test]
fn up_builds_two_ready_nodes_refuses_a_second_up_and_down_leaves_nothing() {
    let c = LocalCluster::new("local");
    let state = c.up(2);
    let id = state["id"].as_str().unwrap().to_owned();
    let prefix = format!("meshctl-{id}-");
    let names = netns_with(&prefix);
    for node in ["node-1", "node-2"] {
        let ns = names
            .iter()
            .find(|n| n.ends_with(node))
            .unwrap_or_else(|| panic!("no netns for {node} in {names:?}"));
        assert_eq!(
            sh_in_netns(ns, &["sysctl", "-n", "net.ipv4.ip_forward"]),
            "1"
        );
        // The node's ztunnel is ready in the node's namespace (DESIGN.md 7).
        let code = sh_in_netns(
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
    let reach = in_netns(
        &c.node_netns(2),
        &["bash", "-c", "exec 3<>/dev/tcp/172.30.0.1/15012"],
    );
    assert!(
        reach.status.success(),
        "control unreachable from node-2 over the fabric"
    );
    let procs = state_processes(&state);
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
    let logs = c.logs("control");
    assert!(logs.contains("mesh-control serving"), "{logs}");
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

    let down = c.down();
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    let left: Vec<_> = procs.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(!c.state_dir().join("state.json").exists());

    // The state dir is free again.
    let state = c.up(2);
    assert_eq!(state_processes(&state).len(), procs.len());
}

#[test]
fn down_cleans_up_after_crashed_components_and_a_lost_state_file() {
    let c = LocalCluster::new("local");
    let state = c.up(2);
    let prefix = format!("meshctl-{}-", state["id"].as_str().unwrap());
    let procs = state_processes(&state);
    // Crash control and a ztunnel, then lose the state file: down must still sweep by prefix.
    for (name, pid) in &procs {
        if name == "control" || name == "ztunnel-node-1" {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    std::fs::remove_file(c.state_dir().join("state.json")).unwrap();
    let down = c.down();
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let left: Vec<_> = procs.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
}

#[test]
fn up_without_root_says_root_is_needed_and_creates_nothing() {
    let c = LocalCluster::new("local");
    let state: PathBuf = c.state_dir().to_path_buf();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(meshctl_bin())
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
    let c = LocalCluster::new("local");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(meshctl_bin())
        .env("MESHCTL_BIN_DIR", empty.path())
        .args(["local", "up", "--nodes", "1", "--state"])
        .arg(c.state_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cargo build --bin mesh-control"), "{err}");
    assert!(!c.state_dir().join("state.json").exists());
}

#[test]
fn a_cluster_guard_dropped_by_a_failing_test_takes_its_cluster_down() {
    let seen = std::sync::Mutex::new(None);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = LocalCluster::started("guard", 1);
        let procs = state_processes(&c.state_json());
        *seen.lock().unwrap() = Some((c.prefix(), procs));
        panic!("a failing test: the guard must still run down");
    }));
    assert!(failed.is_err());
    let (prefix, procs) = seen.into_inner().unwrap().unwrap();
    assert!(!procs.is_empty());
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let left: Vec<_> = procs.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "processes left after the guard dropped: {left:?}"
    );
}
