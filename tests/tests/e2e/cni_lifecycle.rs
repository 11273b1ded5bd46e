//! Lifecycle of CNI-captured pods: the node agent and ztunnel restart without breaking
//! enrolled pods; CNI DEL and vanished pods leave nothing behind; the plugin answers malformed
//! input with proper CNI errors.

use std::net::SocketAddr;

use mesh_cni::rules::{self, Backend};
use mesh_testbed::cni::cluster::{CniCluster, CniPod, echo_roundtrip, wait_until};
use mesh_testbed::cni::run_plugin;
use mesh_testbed::{Capture, Netns, bin_path};

const PORT: u16 = 8080;
const AMBIENT: [(&str, &str); 1] = [("istio.io/dataplane-mode", "ambient")];

fn addr(pod: &CniPod) -> SocketAddr {
    SocketAddr::new(pod.ip.into(), PORT)
}

fn host_snat_ips(c: &CniCluster, n: u8) -> Vec<std::net::Ipv4Addr> {
    let node =
        mesh_cni::netns::Netns::open_named(c.topology().nodes()[usize::from(n) - 1].netns.name())
            .expect("open the node netns");
    rules::host::pod_ips(&node, c.backend()).expect("list the host SNAT set")
}

fn assert_mtls(c: &CniCluster, client: &CniPod, server: &CniPod, marker: &str) {
    let capture = Capture::node_fabric(&c.topology().nodes()[0]).expect("capture");
    let reply = client
        .send(addr(server), marker)
        .unwrap_or_else(|e| panic!("send failed: {e}\n{}", c.logs()));
    let summary = capture.stop().expect("stop capture");
    assert!(reply.contains(marker), "{reply}");
    assert!(
        !summary.contains(marker.as_bytes()),
        "plaintext on the wire"
    );
    assert!(summary.ports().contains(&15008), "HBONE used");
}

#[test]
fn agent_and_ztunnel_restarts_recover_enrolled_pods() {
    let mut c = CniCluster::start("cnirestart", 2).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    let server = c.create_pod(2, "shop", "server", &[]).unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();
    let mut long_lived = client.connect(addr(&server)).unwrap();
    echo_roundtrip(&mut long_lived, "one\n").unwrap();

    // The agent dies: ztunnel keeps serving the pods it has.
    c.kill_agent(2);
    assert_mtls(&c, &client, &server, "MARKER-agent-down-still-mtls");
    // Drift while it is down: someone deletes the server pod's rules.
    let ns = server.open_netns().unwrap();
    rules::remove(&ns, Backend::Nft).unwrap();
    assert!(server.rules_absent());

    // The restarted agent re-applies the rules and replays the pods to ztunnel, which keeps
    // them (and their connections).
    c.start_agent(2).unwrap();
    wait_until("rules re-applied at startup", || server.rules_complete())
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    echo_roundtrip(&mut long_lived, "two\n").expect("connection survives the agent restart");
    assert_mtls(&c, &client, &server, "MARKER-after-agent-restart");
    assert_eq!(c.redirected(2), vec!["uid-shop-server".to_string()]);

    // ztunnel restarts: the agent hands the pods to the new one.
    c.kill_ztunnel(2);
    wait_until("old listeners gone", || server.ztunnel_gone()).unwrap();
    c.start_ztunnel(2).unwrap();
    wait_until("listeners back", || server.ztunnel_listening())
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_mtls(&c, &client, &server, "MARKER-after-ztunnel-restart");
    let metrics = c.agent_metrics(2);
    assert!(metrics.contains("mesh_cni_pods_enrolled 1"), "{metrics}");
}

#[test]
fn pods_running_before_the_agent_knew_them_are_found_and_enrolled_by_label() {
    let mut c = CniCluster::start("cnilegacy", 2).unwrap();
    c.label_namespace("shop", &[]).unwrap();
    let client = c.create_pod(1, "shop", "client", &[]).unwrap();
    // Never went through mesh-cni: the agent has no record of its sandbox.
    let server = c.create_pod_without_mesh_cni(2, "shop", "server").unwrap();
    let _srv = server.serve(PORT).unwrap();
    c.wait_ztunnel_config(&[client.ip, server.ip]).unwrap();
    assert!(c.redirected(2).is_empty());

    c.label_namespace("shop", &AMBIENT).unwrap();
    wait_until("both pods enrolled", || {
        client.ztunnel_listening() && server.ztunnel_listening() && server.rules_complete()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_mtls(&c, &client, &server, "MARKER-discovered-pod-mtls");
    assert_eq!(c.redirected(2), vec!["uid-shop-server".to_string()]);

    c.label_namespace("shop", &[]).unwrap();
    wait_until("released", || {
        server.ztunnel_gone() && server.rules_absent()
    })
    .unwrap();
}

#[test]
fn cni_del_and_vanished_pods_leave_no_rules_listeners_or_leaks() {
    let mut c = CniCluster::start("cnidel", 1).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let a = c.create_pod(1, "shop", "a", &[]).unwrap();
    let b = c.create_pod(1, "shop", "b", &[]).unwrap();
    let (a_ip, b_ip) = (a.ip, b.ip);
    let records = c.node(1).state_dir.join("pods");
    assert_eq!(std::fs::read_dir(&records).unwrap().count(), 2);
    assert_eq!(host_snat_ips(&c, 1), {
        let mut v = vec![a_ip, b_ip];
        v.sort();
        v
    });

    // CNI DEL: rules and listeners go first (checked in the still-existing netns).
    let node = c.node(1);
    node.chain
        .del(
            &c.topology().nodes()[0].netns,
            &a.netns.path(),
            &a.args,
            Some(&a.result),
        )
        .unwrap();
    assert!(a.rules_absent(), "no rules left after DEL");
    wait_until("listeners closed after DEL", || a.ztunnel_gone()).unwrap();
    assert_eq!(host_snat_ips(&c, 1), vec![b_ip]);
    assert_eq!(std::fs::read_dir(&records).unwrap().count(), 1);
    let ipam = c.dir().join("ipam-1/mesh-test");
    assert!(
        !ipam.join(a_ip.to_string()).exists(),
        "host-local released the IP"
    );
    // A second DEL (runtimes retry) still succeeds.
    node.chain
        .del(
            &c.topology().nodes()[0].netns,
            &a.netns.path(),
            &a.args,
            Some(&a.result),
        )
        .unwrap();
    drop(a);

    // A pod whose sandbox vanishes without DEL: the self-check forgets it.
    let b_ns_name = b.netns.name().to_string();
    drop(b);
    assert!(!std::path::Path::new("/run/netns").join(&b_ns_name).exists());
    wait_until("vanished pod forgotten", || {
        std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(1) == 0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    wait_until("host SNAT set emptied", || host_snat_ips(&c, 1).is_empty()).unwrap();
    assert!(c.redirected(1).is_empty());
    let agent_pid = c.node(1).agent.as_ref().unwrap().pid();
    let metrics = c.agent_metrics(1);
    assert!(metrics.contains("mesh_cni_pods_enrolled 0"), "{metrics}");
    // The agent holds no pod namespace open (only its own node's).
    let open_ns: Vec<String> = std::fs::read_dir(format!("/proc/{agent_pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.starts_with("net:["))
        .collect();
    assert!(
        open_ns.len() <= 1,
        "agent leaks netns descriptors: {open_ns:?}"
    );
}

#[test]
fn malformed_cni_input_gets_proper_cni_errors() {
    let mut c = CniCluster::start("cnibad", 1).unwrap();
    c.label_namespace("shop", &AMBIENT).unwrap();
    let node: &Netns = &c.topology().nodes()[0].netns;
    let plugin = bin_path("mesh-cni");
    let sock = c.node(1).state_dir.join("cni.sock");
    let conf = |version: &str| {
        format!(
            r#"{{"cniVersion":"{version}","name":"n","type":"mesh-cni","agentSocket":"{}","prevResult":{{"cniVersion":"{version}","ips":[]}}}}"#,
            sock.display()
        )
    };
    let env = |cmd: &str| {
        vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", "c1".to_string()),
            ("CNI_NETNS", "/run/netns/none".to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            (
                "CNI_ARGS",
                "K8S_POD_NAME=p;K8S_POD_NAMESPACE=shop;K8S_POD_UID=u".to_string(),
            ),
        ]
    };
    let code = |env: &[(&str, String)], stdin: &str| -> (i32, u64, String) {
        let out = run_plugin(node, &plugin, env, stdin.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} {:?}",
                out.stdout, out.stderr
            )
        });
        (
            out.status.code().unwrap_or(-1),
            v["code"].as_u64().unwrap_or(0),
            out.stdout,
        )
    };
    assert_eq!(code(&env("ADD"), "{ not json").1, 6);
    assert_eq!(
        code(&[("CNI_COMMAND", "ADD".to_string())], &conf("1.0.0")).1,
        4
    );
    assert_eq!(code(&[], &conf("1.0.0")).1, 4);
    let (exit, c1, text) = code(&env("ADD"), &conf("0.0.7"));
    assert_eq!((exit, c1), (1, 1), "{text}");
    // The pod's netns does not exist: the agent refuses, ADD fails.
    let (exit, _, text) = code(&env("ADD"), &conf("1.0.0"));
    assert_eq!(exit, 1, "{text}");
    // STATUS and VERSION against the real agent.
    let out = run_plugin(
        node,
        &plugin,
        &[("CNI_COMMAND", "STATUS".to_string())],
        conf("1.1.0").as_bytes(),
    )
    .unwrap();
    assert!(out.success(), "{out:?}");
    let out = run_plugin(
        node,
        &plugin,
        &[("CNI_COMMAND", "VERSION".to_string())],
        b"",
    )
    .unwrap();
    assert!(
        out.success() && out.stdout.contains("supportedVersions"),
        "{out:?}"
    );
    // DEL of an unknown pod succeeds.
    let out = run_plugin(node, &plugin, &env("DEL"), conf("0.4.0").as_bytes()).unwrap();
    assert!(out.success() && out.stdout.is_empty(), "{out:?}");
}

#[test]
fn the_agent_installs_the_plugin_and_keeps_it_in_a_rewritten_conflist() {
    let dir = tempfile::tempdir().unwrap();
    let (conf_dir, bin_dir) = (dir.path().join("net.d"), dir.path().join("bin"));
    std::fs::create_dir_all(&conf_dir).unwrap();
    let primary = conf_dir.join("10-bridge.conflist");
    let bridge_only = r#"{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge"}]}"#;
    std::fs::write(&primary, bridge_only).unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), "pods: []\n").unwrap();
    let node = Netns::new("install").unwrap();
    let mut cmd = node.command(bin_path("mesh-cni-agent"));
    cmd.args([
        "--node",
        "node-1",
        "--source",
        "local",
        "--metrics-addr",
        "none",
    ])
    .arg("--local-state")
    .arg(dir.path().join("cluster.yaml"))
    .arg("--state-dir")
    .arg(dir.path().join("state"))
    .arg("--cni-conf-dir")
    .arg(&conf_dir)
    .arg("--cni-bin-dir")
    .arg(&bin_dir);
    let _agent = node.spawn_command("agent-install", cmd).unwrap();
    let types = || -> Vec<String> {
        std::fs::read(&primary)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["plugins"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait_until("plugin installed", || types() == ["bridge", "mesh-cni"]).unwrap();
    let installed = std::fs::read(bin_dir.join("mesh-cni")).unwrap();
    assert_eq!(installed, std::fs::read(bin_path("mesh-cni")).unwrap());
    let entry: serde_json::Value = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(&primary).unwrap(),
    )
    .unwrap()["plugins"][1]
        .clone();
    assert_eq!(
        entry["agentSocket"].as_str().unwrap(),
        dir.path().join("state/cni.sock").display().to_string()
    );
    // Another CNI rewrites its config: mesh-cni is added again.
    let tmp = conf_dir.join("rewrite.tmp");
    std::fs::write(&tmp, bridge_only).unwrap();
    std::fs::rename(&tmp, &primary).unwrap();
    wait_until("plugin re-added", || types() == ["bridge", "mesh-cni"]).unwrap();
}
