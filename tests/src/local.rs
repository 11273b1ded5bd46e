//! `meshctl local` clusters for end-to-end tests (DESIGN.md 7) driven through the real `meshctl`
//! binary: [`LocalCluster`] owns a unique state dir in a tempdir and runs `meshctl local down`
//! when it drops, also when the test panics; the free functions look at what a cluster leaves on
//! the machine (namespaces, `/etc/netns` dirs, processes).
//!
//! These are test helpers: a failing command or unreadable state panics with what went wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bin_path;

/// How long anything in a local cluster may take to converge (generous: 2 busy cores).
pub const WAIT: Duration = Duration::from_secs(60);

/// The `meshctl` binary of this workspace (panics with the build command when missing).
pub fn meshctl_bin() -> PathBuf {
    bin_path("meshctl")
}

/// Runs `meshctl args` without a state dir and returns its output.
pub fn meshctl(args: &[&str]) -> Output {
    run(Command::new(meshctl_bin()).args(args))
}

/// Whether this process runs as root (local mode needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Lossy UTF-8 of a command's output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", crate::cmd::describe(cmd)))
}

/// Network namespaces whose name starts with `prefix`.
pub fn netns_with(prefix: &str) -> Vec<String> {
    let out = run(Command::new("ip").args(["netns", "list"]));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Processes inside network namespace `ns`.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    let out = run(Command::new("ip").args(["netns", "pids", ns]));
    text(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Runs `args` inside network namespace `ns` (`ip netns exec`).
pub fn in_netns(ns: &str, args: &[&str]) -> Output {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// `/etc/netns` entries (per-pod resolv.conf dirs) whose name starts with `prefix`.
pub fn etc_netns_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Alive and not a zombie (a killed process may wait a moment for its reaper).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether a pod object (`get pods -o json` item) has condition Ready=True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether a pod object's name starts with `prefix` (a Deployment's pods: `web-`).
pub fn name_starts_with(pod: &Value, prefix: &str) -> bool {
    pod["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(prefix))
}

/// `(name, pid)` of every process recorded in a cluster's `state.json`.
pub fn state_processes(state: &Value) -> Vec<(String, u32)> {
    state["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            let pid = p["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            (name, pid.unwrap_or_else(|| panic!("no pid in {p}")))
        })
        .collect()
}

/// Polls `f` every 200 ms until it gives a value; after [`WAIT`] panics with `what` and `ctx()`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>, ctx: impl Fn() -> String) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `f` until it holds (see [`wait_for`]).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool, ctx: impl Fn() -> String) {
    wait_for(what, || f().then_some(()), ctx);
}

/// The sum of `istio_requests_total` samples of `metrics` whose labels contain every one of
/// `labels` (`name="value"`).
pub fn requests_total(metrics: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `meshctl local` state dir whose cluster is torn down (`local down`) when the guard drops,
/// even when the test fails. Manifests go to a second tempdir, outside the state dir.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    manifests: tempfile::TempDir,
}

impl LocalCluster {
    /// A fresh state dir `meshctl-<tag>-e2e-*`; nothing is up yet.
    pub fn new(tag: &str) -> Self {
        let tempdir = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a tempdir: {e}"))
        };
        LocalCluster {
            dir: tempdir(&format!("meshctl-{tag}-e2e-")),
            manifests: tempdir(&format!("meshctl-{tag}-manifests-")),
        }
    }

    /// [`LocalCluster::new`] then [`LocalCluster::up`].
    pub fn started(tag: &str, nodes: u8) -> Self {
        let c = Self::new(tag);
        c.up(nodes);
        c
    }

    /// `meshctl local up --nodes <nodes>`, asserted to succeed; returns the new `state.json`.
    pub fn up(&self, nodes: u8) -> Value {
        let out = self.meshctl(&["local", "up", "--nodes", &nodes.to_string()]);
        assert!(
            out.status.success(),
            "up failed: {}\n{}",
            text(&out.stderr),
            self.log("control")
        );
        self.state_json()
    }

    /// Like [`LocalCluster::up`], with `meshctl`'s directory first on `up`'s PATH: pods inherit
    /// it, so their commands can be `meshctl echo ...` as in `examples/`.
    pub fn up_with_meshctl_on_path(&self, nodes: u8) -> Value {
        let bin = meshctl_bin();
        let dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = run(Command::new(&bin)
            .args(["local", "up", "--state"])
            .arg(self.state_dir())
            .args(["--nodes", &nodes.to_string()])
            .env("PATH", path));
        assert!(
            out.status.success(),
            "up: {}\n{}",
            text(&out.stderr),
            self.log("control")
        );
        self.state_json()
    }

    /// The state dir (`--state`).
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `meshctl args` against this cluster. `--state` goes last, or, when `args` holds `--`
    /// (exec's command follows), right after the two words of the verb.
    pub fn meshctl(&self, args: &[&str]) -> Output {
        let at = if args.contains(&"--") {
            2.min(args.len())
        } else {
            args.len()
        };
        let (head, tail) = args.split_at(at);
        run(Command::new(meshctl_bin())
            .args(head)
            .arg("--state")
            .arg(self.state_dir())
            .args(tail))
    }

    /// `meshctl args` asserted to succeed (the message has its output and the runtime's log);
    /// returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.meshctl(args);
        assert!(
            out.status.success(),
            "meshctl {args:?} failed: {}{}\nruntime log:\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.log("runtime")
        );
        text(&out.stdout)
    }

    /// `meshctl local exec --state <dir> <pod> -- args...`: arguments unchanged, no shell.
    pub fn exec(&self, pod: &str, args: &[&str]) -> Output {
        run(Command::new(meshctl_bin())
            .args(["local", "exec", "--state"])
            .arg(self.state_dir())
            .args([pod, "--"])
            .args(args))
    }

    /// `curl -sf --max-time 5 <url>` in `pod`; stdout when it succeeded.
    pub fn curl(&self, pod: &str, url: &str) -> Option<String> {
        let out = self.exec(pod, &["curl", "-sf", "--max-time", "5", url]);
        out.status.success().then(|| text(&out.stdout))
    }

    /// The `pod` field of the echo server's answer to `curl -s -m 5 <url>` in `client`.
    pub fn echo_pod(&self, client: &str, url: &str) -> Option<String> {
        let out = self.exec(client, &["curl", "-s", "-m", "5", url]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["pod"].as_str().map(str::to_owned)
    }

    /// The echo's JSON answer to `curl -s -m 5 [-H h]... <url>` from pod `client`, or the
    /// output that was not JSON.
    pub fn echo_json(&self, client: &str, url: &str, headers: &[&str]) -> Result<Value, String> {
        let mut args = vec!["curl", "-s", "-m", "5"];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.push(url);
        let out = self.exec(client, &args);
        serde_json::from_slice(&out.stdout)
            .map_err(|_| format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }

    /// Pod `pod`'s own metrics (`curl -s` of port 15020 inside it; a waypoint's).
    pub fn pod_metrics(&self, pod: &str) -> String {
        let out = self.exec(pod, &["curl", "-s", "http://127.0.0.1:15020/metrics"]);
        assert!(
            out.status.success(),
            "metrics of {pod}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// The stored objects of `kind` (the store file: `get` lists only pods, services...).
    pub fn stored(&self, kind: &str) -> Vec<Value> {
        let path = self.state_dir().join("store/objects.json");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let v: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let items = v["items"].as_array();
        let items = items.unwrap_or_else(|| panic!("no items in {}", path.display()));
        items
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    }

    /// Writes `yaml` to the manifests dir as `name`; its path.
    pub fn manifest(&self, name: &str, yaml: &str) -> String {
        let p = self.manifests.path().join(name);
        std::fs::write(&p, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p.display().to_string()
    }

    /// `local apply -f <path>` asserted to succeed; stdout.
    pub fn apply_file(&self, path: &str) -> String {
        self.ok(&["local", "apply", "-f", path])
    }

    /// Writes `yaml` as manifest `name` and applies it; stdout.
    pub fn apply(&self, name: &str, yaml: &str) -> String {
        self.apply_file(&self.manifest(name, yaml))
    }

    /// Writes `yaml` as manifest `name` and deletes what it names; stdout.
    pub fn delete(&self, name: &str, yaml: &str) -> String {
        self.ok(&["local", "delete", "-f", &self.manifest(name, yaml)])
    }

    /// `local label <kind> <name> <label>` (`key=value` sets, `key-` removes).
    pub fn label(&self, kind: &str, name: &str, label: &str) -> String {
        self.ok(&["local", "label", kind, name, label])
    }

    /// `local logs <target>` asserted to succeed.
    pub fn logs(&self, target: &str) -> String {
        self.ok(&["local", "logs", target])
    }

    /// `local down` (the guard's drop runs it again, harmlessly).
    pub fn down(&self) -> Output {
        self.meshctl(&["local", "down"])
    }

    /// The parsed `state.json`.
    pub fn state_json(&self) -> Value {
        let path = self.state_dir().join("state.json");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The cluster's id (its namespaces are `meshctl-<id>-...`).
    pub fn id(&self) -> String {
        let state = self.state_json();
        let id = state["id"].as_str();
        id.unwrap_or_else(|| panic!("no id in {state}")).to_owned()
    }

    /// `meshctl-<id>-`: the prefix of every namespace and `/etc/netns` dir of the cluster.
    pub fn prefix(&self) -> String {
        format!("meshctl-{}-", self.id())
    }

    /// Node `n`'s network namespace.
    pub fn node_netns(&self, n: u8) -> String {
        format!("{}node-{n}", self.prefix())
    }

    /// Node `n`'s ztunnel metrics (`curl` of port 15020 inside the node netns).
    pub fn ztunnel_metrics(&self, n: u8) -> String {
        let ns = self.node_netns(n);
        text(&in_netns(&ns, &["curl", "-s", "http://127.0.0.1:15020/metrics"]).stdout)
    }

    /// A component's log file (`logs/<name>.log`), empty when missing.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state_dir().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Waits until component `name`'s log holds `what` (`holds`), and returns the log. Access
    /// records reach the file in batches (up to 100 ms after they happen), so a test that just
    /// made a connection must wait for its record rather than read the log once.
    pub fn wait_log(&self, name: &str, what: &str, holds: impl Fn(&str) -> bool) -> String {
        wait_for(
            what,
            || {
                let log = self.log(name);
                holds(&log).then_some(log)
            },
            || format!("{name} log:\n{}", self.log(name)),
        )
    }

    /// Every pod (`local get pods -o json` items).
    pub fn pods(&self) -> Vec<Value> {
        let out = self.ok(&["local", "get", "pods", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// The pod named `name` (any namespace).
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Polls `f` until it gives a value; panics after [`WAIT`] with the pods and runtime log.
    pub fn wait<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_for(what, f, || {
            format!(
                "pods: {:#?}\nruntime log:\n{}",
                self.pods(),
                self.log("runtime")
            )
        })
    }

    /// Waits until `f` holds (see [`LocalCluster::wait`]).
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        self.wait(what, || f().then_some(()));
    }

    /// Waits until at least `n` pods are Running with an address.
    pub fn wait_running(&self, n: usize) {
        self.wait_until(&format!("{n} pods running"), || {
            let pods = self.pods();
            let running = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
            running.count() >= n
        });
    }

    /// Waits until pod `name` is Running and Ready; its IP.
    pub fn wait_ready(&self, name: &str) -> String {
        self.wait(&format!("pod {name} running and ready"), || {
            let p = self.pod(name)?;
            (p["status"]["phase"] == "Running" && pod_ready(&p))
                .then(|| p["status"]["podIP"].as_str().map(str::to_owned))
                .flatten()
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

/// The app of the waypoint end-to-end tests, in the ambient namespace `ns` (served by the waypoint named
/// `waypoint`): a Service `echo` over two Deployments on node-2 (`echo-v1`, `echo-v2`, each also behind a
/// Service of its own) and a `client` pod on node-1. Ends with a complete document, so more can follow
/// after a `---` line.
pub fn echo_versions_app(ns: &str) -> String {
    ECHO_VERSIONS_APP.replace("{ns}", ns)
}

const ECHO_VERSIONS_APP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: {ns}}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: {ns}}
spec:
  selector: {app: echo, version: v1}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: {ns}}
spec:
  selector: {app: echo, version: v2}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-v1, namespace: {ns}}
spec:
  selector: {matchLabels: {app: echo, version: v1}}
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      containers: [{name: echo, command: [meshctl, echo, --port, "8080", --version, v1]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-v2, namespace: {ns}}
spec:
  selector: {matchLabels: {app: echo, version: v2}}
  template:
    metadata: {labels: {app: echo, version: v2}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      containers: [{name: echo, command: [meshctl, echo, --port, "8080", --version, v2]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: {ns}}
spec:
  nodeName: node-1
  containers: [{name: c, command: [sleep, "3600"]}]
"#;
