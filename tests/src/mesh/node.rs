//! One node of a test mesh: its ztunnel process and the node agent's handoff server it talks to.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesh_api::handoff::PodInfo;
use mesh_cni::handoff_server::{Delivery, HandoffServer, ServerConfig};
use mesh_cni::rules::{self, Backend, RedirectOptions};

use super::{Mesh, MeshError, PodSpec, READY_TIMEOUT};
use crate::topology::Node;
use crate::{Pod, Process, bin_path};

/// How often readiness and config versions are polled.
const POLL: Duration = Duration::from_millis(50);

/// A node's mesh components.
pub struct MeshNode {
    ztunnel: Process,
    handoff: HandoffServer,
    netns_name: String,
    index: u8,
    socket: PathBuf,
}

impl MeshNode {
    pub(super) fn start(node: &Node, mesh: &Mesh) -> Result<Self, MeshError> {
        let socket = mesh.dir().join(format!("handoff-{}.sock", node.index));
        if let Some(control) = mesh.control() {
            let token = control.token_file(&node.name())?;
            let mut cmd = ztunnel_base_command(&node.netns, &node.name(), &socket);
            cmd.arg("--control")
                .arg(control.addr(1))
                .arg("--token-file")
                .arg(token)
                .arg("--control-ca")
                .arg(control.root_file());
            return Self::start_command(node, &socket, cmd);
        }
        let files = ZtunnelFiles {
            config: &mesh.config,
            ca_cert: &mesh.ca_cert,
            ca_key: &mesh.ca_key,
            socket: &socket,
        };
        Self::start_with(node, &files, &bin_path("ztunnel"))
    }

    /// Starts the node agent's handoff server at `files.socket` and the ztunnel binary `bin` with `files`, and
    /// waits until it is ready. For harnesses that own their topology (e.g. `mesh-benches`); tests use
    /// [`super::MeshBuilder`].
    pub fn start_with(
        node: &Node,
        files: &ZtunnelFiles<'_>,
        bin: &std::path::Path,
    ) -> Result<Self, MeshError> {
        let cmd = ztunnel_command_with(bin, &node.netns, &node.name(), files);
        Self::start_command(node, files.socket, cmd)
    }

    /// Starts the handoff server at `socket` and the ztunnel command `cmd`, and waits until it is ready.
    fn start_command(
        node: &Node,
        socket: &std::path::Path,
        cmd: std::process::Command,
    ) -> Result<Self, MeshError> {
        let err = |what: String| MeshError::Node {
            node: node.index,
            what,
        };
        let handoff = HandoffServer::bind(socket, ServerConfig::default())
            .map_err(|e| err(format!("handoff server: {e}")))?;
        let ztunnel = node
            .netns
            .spawn_command(&format!("ztunnel-{}", node.index), cmd)
            .map_err(|e| err(format!("start ztunnel: {e}")))?;
        let me = Self {
            ztunnel,
            handoff,
            netns_name: node.netns.name().to_owned(),
            index: node.index,
            socket: socket.to_path_buf(),
        };
        me.wait_ready()?;
        Ok(me)
    }

    /// The ztunnel process (logs on failure: `stdout()`).
    pub fn ztunnel(&self) -> &Process {
        &self.ztunnel
    }

    /// The ztunnel process, mutably (to signal or stop it).
    pub fn ztunnel_mut(&mut self) -> &mut Process {
        &mut self.ztunnel
    }

    /// The handoff socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// An HTTP GET against a port of the node's namespace (admin, metrics, readiness), via curl.
    pub fn http_get(&self, addr: &str, path: &str) -> Result<(u16, String), MeshError> {
        let url = format!("http://{addr}{path}");
        let out = crate::cmd::run(
            std::process::Command::new("ip").args([
                "netns",
                "exec",
                &self.netns_name,
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                &url,
            ]),
            None,
            Duration::from_secs(5),
        )
        .map_err(|e| self.err(format!("curl {url}: {e}")))?;
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// The metrics text of this node's ztunnel.
    pub fn metrics(&self) -> Result<String, MeshError> {
        Ok(self.http_get("127.0.0.1:15020", "/metrics")?.1)
    }

    /// Config version the ztunnel has loaded (0 if unknown).
    pub fn config_version(&self) -> u64 {
        self.http_get("127.0.0.1:15000", "/config_dump")
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["version"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the ztunnel has loaded config version `v` or newer.
    pub fn wait_config_version(&self, v: u64) -> Result<(), MeshError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.config_version() < v {
            if Instant::now() > deadline {
                return Err(self.err(format!(
                    "config version {v} not loaded; logs:\n{}",
                    self.ztunnel.stdout()
                )));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn wait_ready(&self) -> Result<(), MeshError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok((200, _)) = self.http_get("127.0.0.1:15021", "/healthz/ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.err(format!(
                    "ztunnel not ready; stdout:\n{}\nstderr:\n{}",
                    self.ztunnel.stdout(),
                    self.ztunnel.stderr()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Enrols `pod` on this node: redirect rules in its netns, handoff to the ztunnel, wait for its listeners.
    pub fn enroll(&self, spec: &PodSpec, pod: &Pod) -> Result<(), MeshError> {
        let ns = mesh_cni::netns::Netns::open_named(pod.netns.name())
            .map_err(|e| self.err(format!("open netns of {}: {e}", pod.name)))?;
        rules::apply(&ns, Backend::Nft, &RedirectOptions::default())
            .map_err(|e| self.err(format!("redirect rules for {}: {e}", pod.name)))?;
        let info = PodInfo {
            uid: spec.uid(),
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            service_account: spec.service_account.clone(),
        };
        match self.handoff.add_pod(info, ns.into_fd()) {
            Ok(Delivery::Acked) => {}
            Ok(other) => return Err(self.err(format!("handoff of {}: {other:?}", pod.name))),
            Err(e) => return Err(self.err(format!("handoff of {}: {e}", pod.name))),
        }
        for port in [15001, 15006, 15008] {
            pod.netns
                .wait_listening(port, READY_TIMEOUT)
                .map_err(|e| self.err(format!("ztunnel listener {port} in {}: {e}", pod.name)))?;
        }
        Ok(())
    }

    pub(super) fn unenroll(&self, spec: &PodSpec, pod: &Pod) -> Result<(), MeshError> {
        self.handoff
            .remove_pod(&spec.uid())
            .map_err(|e| self.err(format!("handoff del of {}: {e}", pod.name)))?;
        let ns = mesh_cni::netns::Netns::open_named(pod.netns.name())
            .map_err(|e| self.err(format!("open netns of {}: {e}", pod.name)))?;
        rules::remove(&ns, Backend::Nft).map_err(|e| self.err(format!("remove rules: {e}")))
    }

    fn err(&self, what: String) -> MeshError {
        MeshError::Node {
            node: self.index,
            what,
        }
    }
}

/// Files a ztunnel of a test mesh is started with.
pub struct ZtunnelFiles<'a> {
    /// Config file.
    pub config: &'a std::path::Path,
    /// CA certificate (testing mode).
    pub ca_cert: &'a std::path::Path,
    /// CA key.
    pub ca_key: &'a std::path::Path,
    /// Handoff socket of the node agent.
    pub socket: &'a std::path::Path,
}

/// The command line of a test ztunnel running in `netns` (log level from `MESH_TEST_LOG`, default info).
pub fn ztunnel_command(
    netns: &crate::Netns,
    node_name: &str,
    f: &ZtunnelFiles<'_>,
) -> std::process::Command {
    ztunnel_command_with(&bin_path("ztunnel"), netns, node_name, f)
}

/// [`ztunnel_command`] with the ztunnel binary `bin` (e.g. a release build).
pub fn ztunnel_command_with(
    bin: &std::path::Path,
    netns: &crate::Netns,
    node_name: &str,
    f: &ZtunnelFiles<'_>,
) -> std::process::Command {
    let mut cmd = netns.command(bin);
    cmd.arg("--node")
        .arg(node_name)
        .arg("--config")
        .arg(f.config)
        .arg("--ca-cert")
        .arg(f.ca_cert)
        .arg("--ca-key")
        .arg(f.ca_key)
        .arg("--handoff-socket")
        .arg(f.socket)
        .arg("--drain")
        .arg("0.2")
        .arg("--workers")
        .arg("2")
        .env(
            "RUST_LOG",
            std::env::var("MESH_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
    cmd
}

/// A test ztunnel without config source flags (the caller adds `--control ...`): node, handoff socket, short
/// drain, 2 workers, log level from `MESH_TEST_LOG`.
fn ztunnel_base_command(
    netns: &crate::Netns,
    node_name: &str,
    socket: &std::path::Path,
) -> std::process::Command {
    let mut cmd = netns.command(bin_path("ztunnel"));
    cmd.arg("--node")
        .arg(node_name)
        .arg("--handoff-socket")
        .arg(socket)
        .arg("--drain")
        .arg("0.2")
        .arg("--workers")
        .arg("2")
        .env(
            "RUST_LOG",
            std::env::var("MESH_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
    cmd
}
