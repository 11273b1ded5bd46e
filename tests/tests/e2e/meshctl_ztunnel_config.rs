//! `meshctl ztunnel config` and `meshctl explain` against real ztunnels (two nodes in network
//! namespaces, the test-mesh harness): the `meshctl` binary reaches each node's admin API inside
//! the node netns (`--netns`), prints the sections, and explain's verdicts agree with what the
//! ztunnels actually do with the same connections.
//!
//! Needs root and `cargo build -p meshctl -p ztunnel -p mesh-testbed` first.
//! With `MESH_CAPTURE_DUMP=<file>` the node-2 config dump is saved there (it is the fixture of
//! control/meshctl/tests/it/ztunnel_config.rs).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use mesh_testbed::Pod;
use mesh_testbed::local;
use mesh_testbed::mesh::{MeshBuilder, PodSpec};

const TIMEOUT: Duration = Duration::from_secs(20);

const YAML: &str = "services:
  - {name: echo, namespace: default, vips: [10.96.0.10], ports: [{port: 80, targetPort: 8080}], selector: {app: echo}}
authorizationPolicies:
  - {name: echo-allow-client, namespace: default, selector: {matchLabels: {app: echo}}, action: ALLOW,
     rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]}]}
peerAuthentications:
  - {name: strict, namespace: default, mtls: {mode: STRICT}}
";

/// Runs `meshctl args` (on the host: meshctl enters the netns itself); (success, stdout, stderr).
fn meshctl(args: &[&str]) -> (bool, String, String) {
    let out = local::meshctl(args);
    (
        out.status.success(),
        local::text(&out.stdout),
        local::text(&out.stderr),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = meshctl(args);
    assert!(success, "meshctl {args:?} failed: {stderr}\n{stdout}");
    stdout
}

fn send(pod: &Pod, to: SocketAddr) -> bool {
    let to = to.to_string();
    let args = [
        "send",
        "--to",
        to.as_str(),
        "--data",
        "hi",
        "--timeout-ms",
        "5000",
    ];
    pod.netns
        .run_timeout(mesh_testbed::bin_path("mesh-testapp"), &args, TIMEOUT)
        .unwrap()
        .success()
}

#[test]
fn ztunnel_config_and_explain_read_real_ztunnels() {
    let mut b = MeshBuilder::new("mctlzc", 2).unwrap();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let other = b.pod(1, PodSpec::new("other")).unwrap();
    let echo = b
        .pod(2, PodSpec::new("echo-1").label("app", "echo"))
        .unwrap();
    b.yaml(YAML);
    let mesh = b.start().unwrap();
    let mut srv = mesh
        .pod(echo)
        .spawn(
            mesh_testbed::bin_path("mesh-testapp"),
            &["serve", "--port", "8080"],
        )
        .unwrap();
    srv.wait_for_output("listening on", TIMEOUT).unwrap();
    let node2 = mesh.topology().nodes()[1].netns.name().to_owned();
    let echo_ip = mesh.pod(echo).ip.to_string();
    // `meshctl ztunnel config node-2 <args> --netns <node-2's netns>`, asserted to succeed.
    let config = |args: &[&str]| {
        let node = ["ztunnel", "config", "node-2"];
        ok(&[&node[..], args, &["--netns", &node2]].concat())
    };

    // Sections as tables.
    let workloads = config(&["workloads"]);
    let header = workloads.lines().next().unwrap();
    assert!(
        header.starts_with("NAMESPACE") && header.contains("ADDRESS"),
        "{workloads}"
    );
    let row = workloads.lines().find(|l| l.contains("echo-1")).unwrap();
    assert!(
        row.contains(&echo_ip) && row.contains("node-2") && row.contains("HBONE"),
        "{row}"
    );
    assert!(
        workloads.contains("client") && workloads.contains("other"),
        "{workloads}"
    );
    let services = config(&["services"]);
    let row = services.lines().find(|l| l.contains("echo")).unwrap();
    assert!(
        row.contains("10.96.0.10") && row.contains("80->8080"),
        "{services}"
    );
    let policies = config(&["policies"]);
    let row = policies
        .lines()
        .find(|l| l.contains("echo-allow-client"))
        .unwrap();
    assert!(
        row.contains("ALLOW") && row.contains("WorkloadSelector"),
        "{policies}"
    );
    assert!(policies.contains("PeerAuthentication"), "{policies}");
    let certs = config(&["certificates"]);
    assert!(certs.starts_with("IDENTITY"), "{certs}");
    let all = config(&[]);
    assert!(
        all.contains("CONFIG VERSION") && all.contains("WORKLOADS") && all.contains("CERTIFICATES"),
        "{all}"
    );

    // Raw JSON is the admin API's.
    let json: serde_json::Value =
        serde_json::from_str(&config(&["workloads", "-o", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    let dump = config(&["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert!(
        v["version"].as_u64().unwrap() >= 1 && v["config"]["services"].is_array(),
        "{v}"
    );

    // explain agrees with what the ztunnels do.
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let allowed = ok(&["explain", "default/client", "echo:80", "--netns", &node2]);
    assert!(allowed.contains("VERDICT:     ALLOW"), "{allowed}");
    assert!(
        allowed.contains("allowed by ALLOW policy default/echo-allow-client"),
        "{allowed}"
    );
    assert!(allowed.contains("mTLS mode: STRICT"), "{allowed}");
    assert!(
        send(mesh.pod(client), vip),
        "client -> echo must pass, as explained"
    );
    let denied = ok(&[
        "explain",
        "default/other",
        "10.96.0.10:80",
        "--netns",
        &node2,
        "-o",
        "json",
    ]);
    let d: serde_json::Value = serde_json::from_str(&denied).unwrap();
    assert_eq!(d["verdict"], "deny", "{d}");
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .contains("no ALLOW policy matched (tried default/echo-allow-client)"),
        "{d}"
    );
    assert!(
        !send(mesh.pod(other), vip),
        "other -> echo must be refused, as explained"
    );
    // After traffic, node-2's ztunnel holds echo-1's certificate; the dump now has every section.
    let certs = config(&["certificates"]);
    let row = certs
        .lines()
        .find(|l| l.contains("/sa/echo-1"))
        .unwrap_or_else(|| panic!("{certs}"));
    assert_eq!(row.split_whitespace().count(), 3, "{row}");
    if let Some(path) = std::env::var_os("MESH_CAPTURE_DUMP") {
        std::fs::write(path, config(&["-o", "json"])).unwrap();
    }
    let outside = ok(&[
        "explain",
        "default/client",
        "192.0.2.1:443",
        "--netns",
        &node2,
    ]);
    assert!(outside.contains("PASSTHROUGH"), "{outside}");

    // Bad input: a clear error.
    let (success, _, stderr) = meshctl(&["explain", "default/ghost", "echo:80", "--netns", &node2]);
    assert!(
        !success && stderr.contains("no pod default/ghost") && stderr.contains("client"),
        "{stderr}"
    );
    let (success, _, stderr) = meshctl(&[
        "ztunnel",
        "config",
        "node-2",
        "--netns",
        "mctlzc-no-such-netns",
    ]);
    assert!(
        !success && stderr.contains("mctlzc-no-such-netns"),
        "{stderr}"
    );
}
