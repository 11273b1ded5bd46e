//! Tests of the testbed itself: real namespaces, real processes, real packets (needs root).

use std::time::Duration;

use mesh_testbed::testapp::cli::READY_LINE;
use mesh_testbed::{Capture, Netns, Pod, Topology, netns};

const APP: &str = env!("CARGO_BIN_EXE_mesh-testapp");
const READY: Duration = Duration::from_secs(10);

fn send(from: &Pod, to: &str, data: &str) -> mesh_testbed::cmd::CmdOutput {
    from.netns
        .run_timeout(
            APP,
            &["send", "--to", to, "--data", data, "--timeout-ms", "3000"],
            Duration::from_secs(10),
        )
        .expect("mesh-testapp send runs")
}

#[test]
fn pods_on_two_nodes_talk_directly_across_the_fabric() {
    let topo = Topology::new("direct", 2).expect("topology");
    let server = topo.add_pod(2, "server").expect("server pod");
    let client = topo.add_pod(1, "client").expect("client pod");
    assert_eq!(server.ip.to_string(), "10.2.0.2");
    assert_eq!(client.ip.to_string(), "10.1.0.2");

    let mut app = server
        .spawn(APP, &["serve", "--port", "8080", "--banner"])
        .expect("serve");
    app.wait_for_output(READY_LINE, READY)
        .expect("server ready");
    server.netns.wait_listening(8080, READY).expect("listening");

    let out = send(&client, "10.2.0.2:8080", "ping across nodes");
    assert!(out.success(), "send failed: {}", out.stderr);
    assert_eq!(out.stdout, "hello from server\nping across nodes");

    // A closed port is refused with its own exit code, and the message says so.
    let out = send(&client, "10.2.0.2:8081", "x");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);

    // Node-to-node over the fabric, and node to a remote pod (routing via the other node).
    let node1 = &topo.node(1).expect("node 1").netns;
    let node2 = &topo.node(2).expect("node 2").netns;
    let mut node_app = node2
        .spawn("node-app", APP, &["serve", "--port", "8090"])
        .expect("serve on node 2");
    node_app
        .wait_for_output(READY_LINE, READY)
        .expect("node server ready");
    let out = node1
        .run_timeout(
            APP,
            &["send", "--to", "172.30.0.2:8090", "--data", "n2n"],
            Duration::from_secs(10),
        )
        .expect("send from node runs");
    assert_eq!(out.stdout, "n2n", "node 1 -> node 2 failed: {}", out.stderr);
    let out = node1
        .run_timeout(
            APP,
            &["send", "--to", "10.2.0.2:8080", "--data", "from node"],
            Duration::from_secs(10),
        )
        .expect("send from node runs");
    assert!(out.success(), "node -> remote pod failed: {}", out.stderr);
}

#[test]
fn pods_on_the_same_node_talk_through_the_node() {
    let topo = Topology::new("samenode", 1).expect("topology");
    let a = topo.add_pod(1, "a").expect("pod a");
    let b = topo.add_pod(1, "b").expect("pod b");
    assert_ne!(a.ip, b.ip);
    let mut app = b.spawn(APP, &["serve", "--port", "9000"]).expect("serve");
    app.wait_for_output(READY_LINE, READY)
        .expect("server ready");
    let out = send(&a, &format!("{}:9000", b.ip), "same node");
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "same node");
}

#[test]
fn nothing_of_the_topology_reaches_the_root_namespace() {
    let root_links = std::fs::read_dir("/sys/class/net").expect("sysfs").count();
    let root_routes = std::process::Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .expect("ip");
    let topo = Topology::new("rootclean", 2).expect("topology");
    let _pod = topo.add_pod(1, "p").expect("pod");
    assert_eq!(
        std::fs::read_dir("/sys/class/net").expect("sysfs").count(),
        root_links
    );
    let routes_now = std::process::Command::new("ip")
        .args(["route", "show", "table", "all"])
        .output()
        .expect("ip");
    assert_eq!(routes_now.stdout, root_routes.stdout);
    // Forwarding is on inside the nodes only.
    let fwd = topo
        .node(1)
        .expect("node")
        .netns
        .run_ok("sysctl", &["-n", "net.ipv4.ip_forward"])
        .expect("sysctl");
    assert_eq!(fwd.trim(), "1");
}

#[test]
fn dropping_cleans_up_namespaces_and_processes() {
    let (names, pid) = {
        let topo = Topology::new("cleanup", 2).expect("topology");
        let pod = topo.add_pod(1, "victim").expect("pod");
        let other = topo.add_pod(2, "other").expect("pod");
        // A process started outside any guard must still be killed with its namespace.
        let out = pod
            .netns
            .run_ok("sh", &["-c", "sleep 600 >/dev/null 2>&1 & echo $!"])
            .expect("background sleep");
        let pid: i32 = out.trim().parse().expect("pid");
        let mut names: Vec<String> = topo
            .nodes()
            .iter()
            .map(|n| n.netns.name().to_owned())
            .collect();
        names.extend([
            topo.fabric().name().to_owned(),
            pod.netns.name().to_owned(),
            other.netns.name().to_owned(),
        ]);
        let listed = netns::list();
        for n in &names {
            assert!(
                listed.contains(n),
                "{n} should exist while the topology lives"
            );
        }
        (names, pid)
    };
    let listed = netns::list();
    for n in &names {
        assert!(!listed.contains(n), "{n} left behind after drop");
    }
    std::thread::sleep(Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "process {pid} survived its namespace: {state}"
    );
}

#[test]
fn cleanup_happens_on_panic_too() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let topo = Topology::new("panic", 1).expect("topology");
        let pod = topo.add_pod(1, "p").expect("pod");
        let mut held = names.lock().expect("lock");
        held.push(pod.netns.name().to_owned());
        held.push(topo.node(1).expect("node").netns.name().to_owned());
        drop(held);
        panic!("test failure inside the topology");
    });
    assert!(result.is_err());
    let listed = netns::list();
    for n in names.lock().expect("lock").iter() {
        assert!(!listed.contains(n), "{n} left behind after a panic");
    }
}

#[test]
fn capture_sees_plaintext_marker_and_ports() {
    let topo = Topology::new("capture", 2).expect("topology");
    let server = topo.add_pod(2, "server").expect("server pod");
    let client = topo.add_pod(1, "client").expect("client pod");
    let mut app = server
        .spawn(APP, &["serve", "--port", "7070"])
        .expect("serve");
    app.wait_for_output(READY_LINE, READY)
        .expect("server ready");

    let capture = Capture::node_fabric(topo.node(1).expect("node 1")).expect("capture starts");
    let marker = "PLAINTEXT-MARKER-4f1c2b";
    let out = send(&client, "10.2.0.2:7070", marker);
    assert!(out.success(), "{}", out.stderr);
    let seen = capture.stop().expect("capture stops");
    assert!(
        seen.contains(marker.as_bytes()),
        "marker missing from capture: {:?}",
        seen.flows().collect::<Vec<_>>()
    );
    assert!(
        seen.ports().contains(&7070),
        "ports seen: {:?}",
        seen.ports()
    );
    assert!(!seen.contains(b"NEVER-SENT-MARKER"));

    // A capture where nothing of interest was sent does not see the marker.
    let capture = Capture::node_fabric(topo.node(1).expect("node 1")).expect("capture starts");
    let out = send(&client, "10.2.0.2:7070", "something else");
    assert!(out.success(), "{}", out.stderr);
    let seen = capture.stop().expect("capture stops");
    assert!(!seen.contains(marker.as_bytes()));
    assert!(seen.segments > 0);
}

#[test]
fn bare_netns_runs_commands_and_reports_failures() {
    let ns = Netns::new("bare").expect("netns");
    let links = ns.ip(&["-o", "link"]).expect("ip link");
    assert_eq!(
        links.lines().count(),
        1,
        "a fresh namespace has only lo: {links}"
    );
    let err = ns
        .run_ok("sh", &["-c", "echo nope >&2; exit 4"])
        .expect_err("fails");
    assert!(
        err.to_string().contains("nope") && err.to_string().contains(ns.name()),
        "{err}"
    );
    assert!(ns.path().exists());
    let err = ns
        .wait_listening(1234, Duration::from_millis(100))
        .expect_err("nothing listens");
    assert!(err.to_string().contains("1234"), "{err}");
}
