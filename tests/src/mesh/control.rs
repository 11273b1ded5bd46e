//! A test mesh fed by a real `mesh-control` process instead of a ztunnel config file: the pods become
//! Kubernetes YAML in control's config directory, control runs in node 1's namespace (like a host-network pod)
//! and every ztunnel gets its config stream and certificates from it.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{MeshError, PodSpec};
use crate::topology::{Node, node_ip};
use crate::{Pod, Process, bin_path};

/// control's gRPC port (DESIGN.md 3).
pub const CONTROL_PORT: u16 = 15012;
/// How long control may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The control plane of a test mesh.
pub struct ControlPlane {
    process: Option<Process>,
    dir: PathBuf,
    netns: String,
}

impl ControlPlane {
    /// Prepares control's directories under `dir`, with the mesh CA's root (`ca_cert`/`ca_key`) as its CA and a
    /// token key, and starts it in `node`'s namespace.
    pub fn start(node: &Node, dir: &Path, ca_cert: &str, ca_key: &str) -> Result<Self, MeshError> {
        let dir = dir.join("control");
        std::fs::create_dir_all(dir.join("config"))?;
        std::fs::create_dir_all(dir.join("ca"))?;
        std::fs::write(dir.join("ca/root-cert.pem"), ca_cert)?;
        std::fs::write(dir.join("ca/root-key.pem"), ca_key)?;
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        std::fs::write(dir.join("token.key"), key)?;
        let mut me = Self {
            process: None,
            dir,
            netns: node.netns.name().to_owned(),
        };
        me.restart(node)?;
        Ok(me)
    }

    /// Starts control again (after [`Self::stop`]).
    pub fn restart(&mut self, node: &Node) -> Result<(), MeshError> {
        let mut cmd = node.netns.command(bin_path("mesh-control"));
        cmd.arg("serve")
            .arg("--config-dir")
            .arg(self.dir.join("config"))
            .arg("--ca-dir")
            .arg(self.dir.join("ca"))
            .arg("--token-key")
            .arg(self.dir.join("token.key"))
            .arg("--listen")
            .arg(format!("{}:{CONTROL_PORT}", node_ip(node.index)))
            .arg("--poll")
            .arg("0.1")
            .env(
                "RUST_LOG",
                std::env::var("MESH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let mut p = node
            .netns
            .spawn_command("mesh-control", cmd)
            .map_err(|e| err(format!("start mesh-control: {e}")))?;
        p.wait_for_output("mesh-control serving", START_TIMEOUT)
            .map_err(|e| err(format!("mesh-control not serving: {e}")))?;
        self.process = Some(p);
        Ok(())
    }

    /// Stops control (proxies keep their last config).
    pub fn stop(&mut self) -> Result<(), MeshError> {
        if let Some(mut p) = self.process.take() {
            p.stop()
                .map_err(|e| err(format!("stop mesh-control: {e}")))?;
        }
        Ok(())
    }

    /// control's process, while running.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// Name of the namespace control runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Address ztunnels dial.
    pub fn addr(&self, node: u8) -> String {
        format!("{}:{CONTROL_PORT}", node_ip(node))
    }

    /// The root file ztunnels verify control with.
    pub fn root_file(&self) -> PathBuf {
        self.dir.join("ca/root-cert.pem")
    }

    /// Writes a ztunnel token for `node` (via `mesh-control token`) and returns its path.
    pub fn token_file(&self, node: &str) -> Result<PathBuf, MeshError> {
        let out = std::process::Command::new(bin_path("mesh-control"))
            .arg("token")
            .arg("--token-key")
            .arg(self.dir.join("token.key"))
            .arg("--service-account")
            .arg("istio-system/ztunnel")
            .arg("--node")
            .arg(node)
            .output()?;
        if !out.status.success() {
            return Err(err(format!(
                "mesh-control token: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let path = self.dir.join(format!("token-{node}"));
        std::fs::write(&path, out.stdout)?;
        Ok(path)
    }

    /// Replaces control's config: one file with the pods and `extra` (Kubernetes YAML).
    pub fn write_config(&self, pods: &[(PodSpec, Pod)], extra: &str) -> Result<(), MeshError> {
        let path = self.dir.join("config/mesh.yaml");
        let tmp = self.dir.join("config/.mesh.yaml.tmp");
        std::fs::write(&tmp, render_kube(pods, extra))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

fn err(what: String) -> MeshError {
    MeshError::Node { node: 0, what }
}

/// The pods as Kubernetes objects (enrolled ones annotated as the CNI does), then `extra`.
pub fn render_kube(pods: &[(PodSpec, Pod)], extra: &str) -> String {
    let mut out = String::new();
    for (spec, pod) in pods {
        let labels: Vec<String> = spec
            .labels
            .iter()
            .map(|(k, v)| format!("{k:?}: {v:?}"))
            .collect();
        let annotations = if spec.enrolled {
            "{ambient.istio.io/redirection: enabled}"
        } else {
            "{}"
        };
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name:?}, namespace: {ns:?}, uid: {uid:?}, labels: {{{labels}}}, \
             annotations: {annotations}}}\nspec: {{serviceAccountName: {sa:?}, nodeName: \"node-{node}\", containers: \
             [{{name: app}}]}}\nstatus: {{phase: Running, podIP: \"{ip}\"}}\n---\n",
            name = spec.name,
            ns = spec.namespace,
            uid = spec.uid(),
            labels = labels.join(", "),
            sa = spec.service_account,
            node = pod.node,
            ip = pod.ip,
        );
    }
    out.push_str(extra);
    out.push('\n');
    out
}
