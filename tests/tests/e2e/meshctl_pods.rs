//! End-to-end tests of local mode's pods (DESIGN.md 7) through the real `meshctl` binary:
//! `apply` of a namespace labelled ambient with an echo server pinned to node-2 and a client on
//! node-1; the runtime wires each pod through the real CNI chain (bridge + host-local +
//! mesh-cni) and runs its command; `exec` reaches the server across nodes through ztunnel
//! (HBONE, counted by the destination ztunnel), by pod IP and by Service name; labelling the
//! namespace unenrols and enrols live; Deployments, restart policies, invalid input rejected
//! whole, `delete` and `down` leave no pod netns and no process.

// Helpers of an integration test: clippy's test exemption does not reach them.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use mesh_testbed::local::{
    LocalCluster, alive, meshctl_bin, name_starts_with, netns_pids, netns_with, text,
};
use serde_json::Value;

/// Whether pod `name` of namespace `shop` is a workload of the mesh (enrolled: HBONE).
fn enrolled(c: &LocalCluster, name: &str) -> bool {
    let out = c.ok(&["local", "get", "workloads", "-n", "shop", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["metadata"]["name"] == name && w["spec"]["protocol"] == "HBONE")
}

/// Sum of `istio_tcp_connections_opened_total` the ztunnel of node `n` counted as destination
/// for clients of namespace `shop`.
fn inbound_connections(c: &LocalCluster, n: u8) -> u64 {
    c.ztunnel_metrics(n)
        .lines()
        .filter(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/shop/sa/default\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

fn pods_yaml(meshctl: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {{istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: shop, labels: {{app: server}}}}
spec:
  nodeName: node-2
  containers:
  - name: echo
    image: ignored
    command: ["{}", "echo"]
    args: ["--port", "8080"]
    env: [{{name: EXTRA, value: "x y"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: server, namespace: shop}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: shop}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-1}}
  containers:
  - name: sleep
    command: ["sleep", "3600"]
"#,
        meshctl.display()
    )
}

#[test]
fn pods_run_through_the_cni_chain_and_talk_across_nodes_through_ztunnel() {
    let c = LocalCluster::started("pods", 2);
    let id = c.id();
    let apply = c.apply("app.yaml", &pods_yaml(&meshctl_bin()));
    assert!(apply.contains("pod/shop/server created"), "{apply}");
    let server_ip = c.wait_ready("server");
    c.wait_ready("client");
    let server = c.pod("server").unwrap();
    assert_eq!(server["spec"]["nodeName"], "node-2");
    assert_eq!(c.pod("client").unwrap()["spec"]["nodeName"], "node-1");
    assert!(server_ip.starts_with("10.2.0."), "{server_ip}");
    let table = c.ok(&["local", "get", "pods", "-n", "shop"]);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop") && l.contains("server"))
    );
    // The pod netns carries the cluster prefix (down's sweep covers it).
    let prefix = format!("meshctl-{id}-pod-");
    assert_eq!(netns_with(&prefix).len(), 2, "{:?}", netns_with(&prefix));
    c.wait("both pods enrolled by the CNI", || {
        (enrolled(&c, "server") && enrolled(&c, "client")).then_some(())
    });

    // Client (node-1) -> server (node-2) through the ztunnels.
    let before = inbound_connections(&c, 2);
    let url = format!("http://{server_ip}:8080/hello?x=1");
    let body = c.wait("the server answering the client", || {
        c.curl("shop/client", &url)
    });
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["path"], "/hello?x=1");
    assert_eq!(answer["pod"], "server", "POD_NAME reaches the process");
    assert_eq!(answer["namespace"], "shop");
    assert_eq!(answer["service_account"], "default");
    c.wait("the destination ztunnel counting the connection", || {
        (inbound_connections(&c, 2) > before).then_some(())
    });
    // And by the Service's name (cluster DNS, VIP resolved by ztunnel), again through ztunnel.
    let before = inbound_connections(&c, 2);
    let body = c.wait("the server answering by its service name", || {
        c.curl("shop/client", "http://server.shop/")
    });
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["pod"], "server");
    c.wait(
        "the destination ztunnel counting the service connection",
        || (inbound_connections(&c, 2) > before).then_some(()),
    );

    // exec: arguments unchanged, no shell, the command's stdout and exit code.
    let out = c.exec("shop/server", &["printf", "%s|%s|%s", "a b", "$HOME", "*"]);
    assert_eq!(text(&out.stdout), "a b|$HOME|*");
    let out = c.exec("shop/client", &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    // The pod's environment (DESIGN.md 7), in exec as in the container.
    let out = c.exec(
        "shop/server",
        &[
            "sh",
            "-c",
            "echo $POD_NAME $POD_NAMESPACE $POD_IP $NODE_NAME $SERVICE_ACCOUNT \"$EXTRA\"",
        ],
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("server shop {server_ip} node-2 default x y")
    );
    let logs = c.logs("shop/server");
    assert!(logs.contains("echo listening on 0.0.0.0:8080"), "{logs}");

    // Unenrol live: the label goes, the CNI's annotation goes, traffic flows in plain text.
    c.label("namespace", "shop", "istio.io/dataplane-mode-");
    c.wait("both pods unenrolled", || {
        (!enrolled(&c, "server") && !enrolled(&c, "client")).then_some(())
    });
    let plain_before = inbound_connections(&c, 2);
    c.wait("the server answering in plain text", || {
        c.curl("shop/client", &url).map(drop)
    });
    assert_eq!(
        inbound_connections(&c, 2),
        plain_before,
        "unenrolled traffic must not go through ztunnel"
    );
    // And enrol again.
    c.label("namespace", "shop", "istio.io/dataplane-mode=ambient");
    c.wait("both pods enrolled again", || {
        (enrolled(&c, "server") && enrolled(&c, "client")).then_some(())
    });
    c.wait_until("traffic through ztunnel again", || {
        c.curl("shop/client", &url).is_some() && inbound_connections(&c, 2) > plain_before
    });

    // Delete: processes stopped, CNI DEL, netns gone.
    let server_ns = format!("{prefix}shop-server");
    let pids = netns_pids(&server_ns);
    assert!(!pids.is_empty(), "the echo process runs in {server_ns}");
    let del = c.delete("app.yaml", &pods_yaml(&meshctl_bin()));
    assert!(del.contains("namespace/shop deleted"), "{del}");
    assert!(c.pods().is_empty(), "{:?}", c.pods());
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "pod processes left: {pids:?}"
    );

    // down leaves no namespace and no process of the cluster.
    c.apply("app.yaml", &pods_yaml(&meshctl_bin()));
    c.wait_ready("server");
    let pids = netns_pids(&server_ns);
    let down = c.down();
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert_eq!(netns_with(&format!("meshctl-{id}-")), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "pod processes left after down: {pids:?}"
    );
}

#[test]
fn deployments_restart_policies_and_input_rejected_whole() {
    let c = LocalCluster::started("pods", 2);
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    // Invalid YAML, an unknown kind or a pod without a command: nothing of the input is applied.
    let store = c.state_dir().join("store/objects.json");
    let before = std::fs::read(&store).ok();
    for (bad, needle) in [
        (format!("{ns}---\nkind: [unclosed\n"), "not valid YAML"),
        (
            format!("{ns}---\napiVersion: v1\nkind: Frobnicator\nmetadata: {{name: f}}\n"),
            "unknown kind v1/Frobnicator",
        ),
        (
            format!(
                "{ns}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: shop}}\nspec: {{containers: [{{name: c, image: nginx}}]}}\n"
            ),
            "has no command",
        ),
    ] {
        let out = c.meshctl(&["local", "apply", "-f", &c.manifest("bad.yaml", &bad)]);
        assert!(!out.status.success(), "{bad} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains(needle) && err.contains("bad.yaml"), "{err}");
        assert_eq!(std::fs::read(&store).ok(), before, "the store changed");
    }
    let config = c.state_dir().join("control/config");
    let files = std::fs::read_dir(&config).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 0, "nothing reached control's config dir");

    let app = format!(
        r#"{ns}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, command: [sleep, '3600']}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: fails-once, namespace: shop}}
spec: {{restartPolicy: Never, containers: [{{name: c, command: [sh, -c, 'exit 3']}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: done, namespace: shop}}
spec: {{restartPolicy: OnFailure, containers: [{{name: c, command: ['true']}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crashes, namespace: shop}}
spec: {{restartPolicy: Always, containers: [{{name: c, command: [sh, -c, 'sleep 0.2; exit 1']}}]}}
"#
    );
    c.apply("app.yaml", &app);
    let web = c.wait("3 running web pods spread over both nodes", || {
        let web: Vec<Value> = c
            .pods()
            .into_iter()
            .filter(|p| name_starts_with(p, "web-"))
            .filter(|p| p["status"]["phase"] == "Running")
            .collect();
        (web.len() == 3).then_some(web)
    });
    let nodes: std::collections::BTreeSet<&str> = web
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "spread over node-1 and node-2: {web:#?}");
    assert!(web.iter().all(|p| p["metadata"]["labels"]["app"] == "web"));
    let phase = |name: &str| c.pod(name).map(|p| p["status"]["phase"].clone());
    c.wait("restartPolicy Never: Failed", || {
        (phase("fails-once") == Some(Value::from("Failed"))).then_some(())
    });
    c.wait("restartPolicy OnFailure after success: Succeeded", || {
        (phase("done") == Some(Value::from("Succeeded"))).then_some(())
    });
    c.wait("restartPolicy Always: restarted", || {
        let p = c.pod("crashes")?;
        let n = p["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        (n >= 2).then_some(())
    });
    assert_eq!(
        c.pod("fails-once").unwrap()["status"]["containerStatuses"][0]["restartCount"],
        0
    );

    // Scaling down keeps the named pods at the new count.
    let scaled = app.replace("replicas: 3", "replicas: 1");
    c.apply("app.yaml", &scaled);
    c.wait("one web pod left", || {
        let n = c
            .pods()
            .iter()
            .filter(|p| name_starts_with(p, "web-"))
            .count();
        (n == 1).then_some(())
    });
    let del = c.delete("app.yaml", &scaled);
    assert!(del.contains("deployment/shop/web deleted"), "{del}");
    assert!(c.pods().is_empty());
    assert_eq!(
        netns_with(&format!("{}pod-", c.prefix())),
        Vec::<String>::new()
    );
}
