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
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mesh_testbed::bin_path;
use serde_json::Value;

/// How long anything in these tests may take to converge (generous: 2 busy cores).
const WAIT: Duration = Duration::from_secs(60);

/// A state dir whose cluster is torn down when the test ends, even when it fails.
struct Cluster {
    dir: tempfile::TempDir,
    manifests: tempfile::TempDir,
}

impl Cluster {
    fn up() -> Self {
        let c = Cluster {
            dir: tempfile::Builder::new()
                .prefix("meshctl-pods-e2e-")
                .tempdir()
                .unwrap(),
            manifests: tempfile::tempdir().unwrap(),
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

    /// `meshctl local exec <pod> -- args...` (the `--` must come last, so --state goes first).
    fn exec(&self, pod: &str, args: &[&str]) -> Output {
        Command::new(bin_path("meshctl"))
            .args(["local", "exec", "--state"])
            .arg(self.dir.path())
            .args([pod, "--"])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.meshctl(args);
        assert!(
            out.status.success(),
            "meshctl {args:?} failed: {}\n{}",
            text(&out.stderr),
            self.log("runtime")
        );
        text(&out.stdout)
    }

    fn file(&self, name: &str, yaml: &str) -> String {
        let p = self.manifests.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.display().to_string()
    }

    fn id(&self) -> String {
        let state: Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("state.json")).unwrap())
                .unwrap();
        state["id"].as_str().unwrap().to_owned()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("logs/{name}.log")))
            .unwrap_or_default()
    }

    fn pods(&self) -> Vec<Value> {
        let out = self.ok(&["local", "get", "pods", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"].as_array().unwrap().clone()
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pods: {:#?}\nruntime log:\n{}",
                self.pods(),
                self.log("runtime")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ready_ip(&self, name: &str) -> String {
        self.wait(&format!("pod {name} running and ready"), || {
            let p = self.pod(name)?;
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (p["status"]["phase"] == "Running" && ready)
                .then(|| p["status"]["podIP"].as_str().map(str::to_owned))
                .flatten()
        })
    }

    fn enrolled(&self, name: &str) -> bool {
        let out = self.ok(&["local", "get", "workloads", "-n", "shop", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["metadata"]["name"] == name && w["spec"]["protocol"] == "HBONE")
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

/// Sum of `istio_tcp_connections_opened_total` the ztunnel of node `n` counted as destination
/// for clients of namespace `shop`.
fn inbound_connections(id: &str, n: u8) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("meshctl-{id}-node-{n}")])
        .args(["curl", "-s", "http://127.0.0.1:15020/metrics"])
        .output()
        .unwrap();
    text(&out.stdout)
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
    let c = Cluster::up();
    let id = c.id();
    let apply = c.ok(&[
        "local",
        "apply",
        "-f",
        &c.file("app.yaml", &pods_yaml(&bin_path("meshctl"))),
    ]);
    assert!(apply.contains("pod/shop/server created"), "{apply}");
    let server_ip = c.ready_ip("server");
    c.ready_ip("client");
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
        (c.enrolled("server") && c.enrolled("client")).then_some(())
    });

    // Client (node-1) -> server (node-2) through the ztunnels.
    let before = inbound_connections(&id, 2);
    let url = format!("http://{server_ip}:8080/hello?x=1");
    let body = c.wait("the server answering the client", || {
        let out = c.exec("shop/client", &["curl", "-sf", "--max-time", "5", &url]);
        out.status.success().then(|| text(&out.stdout))
    });
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["path"], "/hello?x=1");
    assert_eq!(answer["pod"], "server", "POD_NAME reaches the process");
    assert_eq!(answer["namespace"], "shop");
    assert_eq!(answer["service_account"], "default");
    c.wait("the destination ztunnel counting the connection", || {
        (inbound_connections(&id, 2) > before).then_some(())
    });
    // And by the Service's name (cluster DNS, VIP resolved by ztunnel), again through ztunnel.
    let before = inbound_connections(&id, 2);
    let body = c.wait("the server answering by its service name", || {
        let out = c.exec(
            "shop/client",
            &["curl", "-sf", "--max-time", "5", "http://server.shop/"],
        );
        out.status.success().then(|| text(&out.stdout))
    });
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["pod"], "server");
    c.wait(
        "the destination ztunnel counting the service connection",
        || (inbound_connections(&id, 2) > before).then_some(()),
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
    let logs = c.ok(&["local", "logs", "shop/server"]);
    assert!(logs.contains("echo listening on 0.0.0.0:8080"), "{logs}");

    // Unenrol live: the label goes, the CNI's annotation goes, traffic flows in plain text.
    c.ok(&[
        "local",
        "label",
        "namespace",
        "shop",
        "istio.io/dataplane-mode-",
    ]);
    c.wait("both pods unenrolled", || {
        (!c.enrolled("server") && !c.enrolled("client")).then_some(())
    });
    let plain_before = inbound_connections(&id, 2);
    c.wait("the server answering in plain text", || {
        let out = c.exec("shop/client", &["curl", "-sf", "--max-time", "5", &url]);
        out.status.success().then_some(())
    });
    assert_eq!(
        inbound_connections(&id, 2),
        plain_before,
        "unenrolled traffic must not go through ztunnel"
    );
    // And enrol again.
    c.ok(&[
        "local",
        "label",
        "namespace",
        "shop",
        "istio.io/dataplane-mode=ambient",
    ]);
    c.wait("both pods enrolled again", || {
        (c.enrolled("server") && c.enrolled("client")).then_some(())
    });
    c.wait("traffic through ztunnel again", || {
        let out = c.exec("shop/client", &["curl", "-sf", "--max-time", "5", &url]);
        (out.status.success() && inbound_connections(&id, 2) > plain_before).then_some(())
    });

    // Delete: processes stopped, CNI DEL, netns gone.
    let server_ns = format!("{prefix}shop-server");
    let pids = netns_pids(&server_ns);
    assert!(!pids.is_empty(), "the echo process runs in {server_ns}");
    let del = c.ok(&[
        "local",
        "delete",
        "-f",
        &c.file("app.yaml", &pods_yaml(&bin_path("meshctl"))),
    ]);
    assert!(del.contains("namespace/shop deleted"), "{del}");
    assert!(c.pods().is_empty(), "{:?}", c.pods());
    assert_eq!(netns_with(&prefix), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "pod processes left: {pids:?}"
    );

    // down leaves no namespace and no process of the cluster.
    c.ok(&[
        "local",
        "apply",
        "-f",
        &c.file("app.yaml", &pods_yaml(&bin_path("meshctl"))),
    ]);
    c.ready_ip("server");
    let pids = netns_pids(&server_ns);
    c.ok(&["local", "down"]);
    assert_eq!(netns_with(&format!("meshctl-{id}-")), Vec::<String>::new());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "pod processes left after down: {pids:?}"
    );
}

#[test]
fn deployments_restart_policies_and_input_rejected_whole() {
    let c = Cluster::up();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    // Invalid YAML, an unknown kind or a pod without a command: nothing of the input is applied.
    let store = c.dir.path().join("store/objects.json");
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
        let out = c.meshctl(&["local", "apply", "-f", &c.file("bad.yaml", &bad)]);
        assert!(!out.status.success(), "{bad} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains(needle) && err.contains("bad.yaml"), "{err}");
        assert_eq!(std::fs::read(&store).ok(), before, "the store changed");
    }
    let config = c.dir.path().join("control/config");
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
    let path = c.file("app.yaml", &app);
    c.ok(&["local", "apply", "-f", &path]);
    let web = c.wait("3 running web pods spread over both nodes", || {
        let web: Vec<Value> = c
            .pods()
            .into_iter()
            .filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with("web-"))
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
    c.ok(&["local", "apply", "-f", &c.file("app.yaml", &scaled)]);
    c.wait("one web pod left", || {
        let n = c
            .pods()
            .iter()
            .filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with("web-"))
            .count();
        (n == 1).then_some(())
    });
    let del = c.ok(&["local", "delete", "-f", &c.file("app.yaml", &scaled)]);
    assert!(del.contains("deployment/shop/web deleted"), "{del}");
    assert!(c.pods().is_empty());
    assert_eq!(
        netns_with(&format!("meshctl-{}-pod-", c.id())),
        Vec::<String>::new()
    );
}
