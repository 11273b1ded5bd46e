//! A small cluster whose pods are created through a real CNI chain: per node a real
//! `mesh-cni-agent` (local source: a cluster-state file this harness writes, like
//! `meshctl local` does) and a real `ztunnel` fed by the agent's handoff socket.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesh_cni::agent::{LocalState, LocalStatus, NamespaceMeta, PodMeta};
use mesh_cni::rules::Backend;
use mesh_identity::CertificateAuthority;

pub use super::pod::{CniPod, echo_roundtrip};
use super::{CniChain, PodArgs, node_conflist, prepare_cni_path, result_ip};
use crate::mesh::{ZtunnelFiles, ztunnel_command};
use crate::{Netns, Process, Topology, bin_path};

/// How long components get to come up or converge.
pub const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);

/// One node's components.
pub struct CniNode {
    /// The agent process.
    pub agent: Option<Process>,
    /// The ztunnel process.
    pub ztunnel: Option<Process>,
    /// The agent's state dir.
    pub state_dir: PathBuf,
    /// This node's chain.
    pub chain: CniChain,
}

/// The cluster; see the module documentation. Drop order: processes, then namespaces.
pub struct CniCluster {
    backend: Backend,
    /// Nodes 1..=N (index 0 is node 1).
    pub nodes: Vec<CniNode>,
    state: LocalState,
    workloads: Vec<String>,
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
    topo: Topology,
}

impl CniCluster {
    /// `nodes` nodes, each with an agent and a ztunnel, ready.
    pub fn start(tag: &str, nodes: usize) -> anyhow::Result<Self> {
        Self::start_with_backend(tag, nodes, Backend::Nft)
    }

    /// Like [`Self::start`], with the agents programming rules with `backend`.
    pub fn start_with_backend(tag: &str, nodes: usize, backend: Backend) -> anyhow::Result<Self> {
        let topo = Topology::new(tag, nodes)?;
        let dir = tempfile::Builder::new().prefix("mesh-cni-e2e-").tempdir()?;
        let ca = CertificateAuthority::generate(mesh_identity::DEFAULT_TRUST_DOMAIN)?;
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem())?;
        std::fs::write(dir.path().join("ca-key.pem"), ca.key_pem())?;
        let cni_path = dir.path().join("cni-bin");
        prepare_cni_path(&cni_path, &bin_path("mesh-cni"))?;
        let mut me = Self {
            backend,
            nodes: Vec::new(),
            state: LocalState::default(),
            workloads: Vec::new(),
            ca,
            dir,
            topo,
        };
        me.write_state()?;
        me.write_ztunnel_config()?;
        for n in 1..=u8::try_from(nodes)? {
            let state_dir = me.dir.path().join(format!("node-{n}"));
            let chain = CniChain {
                conflist: node_conflist(
                    n,
                    &me.dir.path().join(format!("ipam-{n}")),
                    &state_dir.join("cni.sock"),
                ),
                cni_path: cni_path.clone(),
            };
            me.nodes.push(CniNode {
                agent: None,
                ztunnel: None,
                state_dir,
                chain,
            });
            me.start_agent(n)?;
            me.start_ztunnel(n)?;
        }
        Ok(me)
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Node `n`'s components.
    pub fn node(&self, n: u8) -> &CniNode {
        &self.nodes[usize::from(n) - 1]
    }

    fn node_mut(&mut self, n: u8) -> &mut CniNode {
        &mut self.nodes[usize::from(n) - 1]
    }

    fn node_ns(&self, n: u8) -> &Netns {
        &self.topo.nodes()[usize::from(n) - 1].netns
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("cluster.yaml")
    }

    fn ztunnel_config(&self) -> PathBuf {
        self.dir.path().join("ztunnel.yaml")
    }

    /// Starts (or restarts) node `n`'s agent and waits for its CNI socket.
    pub fn start_agent(&mut self, n: u8) -> anyhow::Result<()> {
        let state_dir = self.node(n).state_dir.clone();
        let sock = state_dir.join("cni.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = self.node_ns(n).command(bin_path("mesh-cni-agent"));
        cmd.args(["--node", &format!("node-{n}"), "--source", "local"])
            .arg("--local-state")
            .arg(self.state_file())
            .arg("--state-dir")
            .arg(&state_dir)
            .args([
                "--metrics-addr",
                "127.0.0.1:15014",
                "--check-interval-ms",
                "300",
            ])
            .args(["--local-poll-ms", "50", "--pod-wait-ms", "5000"])
            .args([
                "--backend",
                match self.backend {
                    Backend::Nft => "nft",
                    Backend::Iptables => "iptables",
                },
            ])
            .env(
                "RUST_LOG",
                std::env::var("MESH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let p = self.node_ns(n).spawn_command(&format!("agent-{n}"), cmd)?;
        self.node_mut(n).agent = Some(p);
        wait_until(&format!("agent {n} CNI socket"), || sock.exists())?;
        Ok(())
    }

    /// Stops node `n`'s agent (SIGKILL: as if it crashed).
    pub fn kill_agent(&mut self, n: u8) {
        if let Some(mut p) = self.node_mut(n).agent.take() {
            let _ = p.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(1));
        }
    }

    /// Starts (or restarts) node `n`'s ztunnel and waits until it is ready.
    pub fn start_ztunnel(&mut self, n: u8) -> anyhow::Result<()> {
        let d = self.dir.path();
        let (config, ca_cert, ca_key) = (
            self.ztunnel_config(),
            d.join("ca.pem"),
            d.join("ca-key.pem"),
        );
        let socket = self.node(n).state_dir.join("ztunnel.sock");
        let files = ZtunnelFiles {
            config: &config,
            ca_cert: &ca_cert,
            ca_key: &ca_key,
            socket: &socket,
        };
        let cmd = ztunnel_command(self.node_ns(n), &format!("node-{n}"), &files);
        let p = self
            .node_ns(n)
            .spawn_command(&format!("ztunnel-{n}"), cmd)?;
        self.node_mut(n).ztunnel = Some(p);
        wait_until(&format!("ztunnel {n} ready"), || {
            self.http_get(n, "127.0.0.1:15021", "/healthz/ready").0 == 200
        })
    }

    /// Stops node `n`'s ztunnel (SIGKILL).
    pub fn kill_ztunnel(&mut self, n: u8) {
        if let Some(mut p) = self.node_mut(n).ztunnel.take() {
            let _ = p.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(1));
        }
    }

    /// An HTTP GET from node `n`'s namespace: (status, body); status 0 when unreachable.
    pub fn http_get(&self, n: u8, addr: &str, path: &str) -> (u16, String) {
        let out = self.node_ns(n).run_timeout(
            "curl",
            &[
                "-s",
                "-m",
                "3",
                "-w",
                "\n%{http_code}",
                &format!("http://{addr}{path}"),
            ],
            Duration::from_secs(5),
        );
        let Ok(out) = out else {
            return (0, String::new());
        };
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Node `n`'s agent metrics text.
    pub fn agent_metrics(&self, n: u8) -> String {
        self.http_get(n, "127.0.0.1:15014", "/metrics").1
    }

    /// Logs of every component, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for (what, p) in [("agent", &node.agent), ("ztunnel", &node.ztunnel)] {
                if let Some(p) = p {
                    out.push_str(&format!(
                        "--- {what} node-{}:\n{}\n{}\n",
                        i + 1,
                        p.stdout(),
                        p.stderr()
                    ));
                }
            }
        }
        out
    }

    /// Sets a namespace's labels (creating it), as `kubectl label namespace` would.
    pub fn label_namespace(&mut self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<()> {
        self.state.namespaces.retain(|n| n.name != name);
        self.state.namespaces.push(NamespaceMeta {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        self.write_state()
    }

    /// Replaces a pod's annotations, as `kubectl annotate` would (the agent sees the change live).
    pub fn annotate_pod(
        &mut self,
        pod: &CniPod,
        annotations: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let meta = self
            .state
            .pods
            .iter_mut()
            .find(|p| p.uid == pod.args.uid)
            .ok_or_else(|| anyhow::anyhow!("no pod {}", pod.key()))?;
        meta.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.write_state()
    }

    /// Creates a pod on node `n` like a kubelet: the pod object first, then a fresh netns
    /// wired by the CNI chain (bridge + host-local + mesh-cni). Its workload is added to the
    /// ztunnel config.
    pub fn create_pod(
        &mut self,
        n: u8,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<CniPod> {
        let args = PodArgs {
            name: name.into(),
            namespace: namespace.into(),
            uid: format!("uid-{namespace}-{name}"),
            container_id: format!("sandbox-{name}-{}", crate::names::unique("c")),
        };
        self.state.pods.push(PodMeta {
            uid: args.uid.clone(),
            name: name.into(),
            namespace: namespace.into(),
            service_account: name.into(),
            node_name: format!("node-{n}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..PodMeta::default()
        });
        self.write_state()?;
        let netns = Netns::new(&format!("{}-pod", name))?;
        let result = self
            .node(n)
            .chain
            .add(self.node_ns(n), &netns.path(), &args)?;
        let ip =
            result_ip(&result).ok_or_else(|| anyhow::anyhow!("no IP in CNI result {result}"))?;
        self.workloads.push(format!(
            "  - {{uid: {uid:?}, name: {name:?}, namespace: {namespace:?}, serviceAccount: {name:?}, node: \"node-{n}\", addresses: [\"{ip}\"], protocol: HBONE}}",
            uid = args.uid
        ));
        self.write_ztunnel_config()?;
        Ok(CniPod {
            netns,
            args,
            node: n,
            ip,
            result,
            backend: self.backend,
        })
    }

    /// Creates a pod on node `n` as if it had started before the mesh was installed: wired by
    /// the chain without `mesh-cni` (bridge + host-local), then reported with its IP.
    pub fn create_pod_without_mesh_cni(
        &mut self,
        n: u8,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<CniPod> {
        let args = PodArgs {
            name: name.into(),
            namespace: namespace.into(),
            uid: format!("uid-{namespace}-{name}"),
            container_id: format!("sandbox-{name}-{}", crate::names::unique("c")),
        };
        let mut chain = self.node(n).chain.clone();
        if let Some(plugins) = chain.conflist["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"] != "mesh-cni");
        }
        let netns = Netns::new(&format!("{name}-pod"))?;
        let result = chain.add(self.node_ns(n), &netns.path(), &args)?;
        let ip =
            result_ip(&result).ok_or_else(|| anyhow::anyhow!("no IP in CNI result {result}"))?;
        self.state.pods.push(PodMeta {
            uid: args.uid.clone(),
            name: name.into(),
            namespace: namespace.into(),
            service_account: name.into(),
            node_name: format!("node-{n}"),
            ips: vec![ip.into()],
            ..PodMeta::default()
        });
        self.write_state()?;
        self.workloads.push(format!(
            "  - {{uid: {uid:?}, name: {name:?}, namespace: {namespace:?}, serviceAccount: {name:?}, node: \"node-{n}\", addresses: [\"{ip}\"], protocol: HBONE}}",
            uid = args.uid
        ));
        self.write_ztunnel_config()?;
        Ok(CniPod {
            netns,
            args,
            node: n,
            ip,
            result,
            backend: self.backend,
        })
    }

    /// Runs CNI CHECK of the chain for `pod`.
    pub fn check_pod(&self, pod: &CniPod) -> Result<(), super::CniError> {
        self.node(pod.node).chain.check(
            self.node_ns(pod.node),
            &pod.netns.path(),
            &pod.args,
            &pod.result,
        )
    }

    /// Deletes a pod like a kubelet: CNI DEL, then the netns, then the pod object.
    pub fn delete_pod(&mut self, pod: CniPod) -> anyhow::Result<()> {
        self.node(pod.node).chain.del(
            self.node_ns(pod.node),
            &pod.netns.path(),
            &pod.args,
            Some(&pod.result),
        )?;
        drop(pod.netns);
        self.state.pods.retain(|p| p.uid != pod.args.uid);
        self.write_state()
    }

    /// The uids the agent of node `n` marked `ambient.istio.io/redirection=enabled`.
    pub fn redirected(&self, n: u8) -> Vec<String> {
        std::fs::read(self.node(n).state_dir.join("redirection.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<LocalStatus>(&b).ok())
            .map(|s| s.redirection.into_keys().collect())
            .unwrap_or_default()
    }

    fn write_state(&self) -> anyhow::Result<()> {
        self.state.write(&self.state_file())?;
        Ok(())
    }

    fn write_ztunnel_config(&self) -> anyhow::Result<()> {
        let text = format!("workloads:\n{}\n", self.workloads.join("\n"));
        let path = self.ztunnel_config();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Waits until every ztunnel has loaded the current config (its workloads by address).
    pub fn wait_ztunnel_config(&self, ips: &[Ipv4Addr]) -> anyhow::Result<()> {
        for n in 1..=u8::try_from(self.nodes.len())? {
            wait_until(&format!("ztunnel {n} config with {ips:?}"), || {
                let body = self.http_get(n, "127.0.0.1:15000", "/config_dump").1;
                ips.iter().all(|ip| body.contains(&ip.to_string()))
            })?;
        }
        Ok(())
    }

    /// The firewall backend the agents use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The CA (for hand-made clients).
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// A scratch dir removed with the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for CniCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.ztunnel.take();
            node.agent.take();
        }
    }
}

/// Polls `f` until true or [`WAIT`] passes.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !f() {
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}
