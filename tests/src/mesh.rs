//! A running mesh on a [`Topology`]: one real `ztunnel` process per node, fed by a real handoff server (the
//! node agent's, from `mesh-cni`), pods enrolled with the real redirect rules of DESIGN.md 4.4.
//!
//! Tests describe pods and extra config (services, policies) with [`MeshBuilder`], then [`MeshBuilder::start`]
//! writes the ztunnel config file, starts the ztunnels and enrols the pods marked as such.

mod config;
pub mod control;
mod node;

use std::path::PathBuf;
use std::time::Duration;

use mesh_identity::CertificateAuthority;

pub use config::{PodSpec, render};
use control::ControlPlane;
pub use node::{MeshNode, ZtunnelFiles, ztunnel_command, ztunnel_command_with};

use crate::{Pod, Topology};

/// How long a ztunnel may take to become ready or to load a new config.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an invalid config is given to (wrongly) take effect: several of ztunnel's poll periods.
const REJECT_SETTLE: Duration = Duration::from_millis(2000);

/// Errors of building or driving a mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The topology could not be built.
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// Files of the mesh could not be written.
    #[error("mesh files: {0}")]
    Io(#[from] std::io::Error),
    /// The CA could not be created.
    #[error("mesh CA: {0}")]
    Ca(#[from] mesh_identity::Error),
    /// A node's ztunnel or agent side failed.
    #[error("node {node}: {what}")]
    Node {
        /// Node number.
        node: u8,
        /// What went wrong.
        what: String,
    },
}

/// Describes a mesh before it starts.
pub struct MeshBuilder {
    topo: Topology,
    dir: tempfile::TempDir,
    pods: Vec<(PodSpec, Pod)>,
    extra: String,
    control: bool,
}

impl MeshBuilder {
    /// A topology of `nodes` nodes, tagged `tag` in namespace names.
    pub fn new(tag: &str, nodes: usize) -> Result<Self, MeshError> {
        Ok(Self {
            topo: Topology::new(tag, nodes)?,
            dir: tempfile::Builder::new().prefix("mesh-e2e-").tempdir()?,
            pods: Vec::new(),
            extra: String::new(),
            control: false,
        })
    }

    /// Feeds the ztunnels from a real `mesh-control` (config stream and CA) instead of a config file; the extra
    /// YAML is then Kubernetes YAML (see [`control`]).
    pub fn with_control(&mut self) -> &mut Self {
        self.control = true;
        self
    }

    /// Adds a pod on node `node`; returns its index (see [`Mesh::pod`]).
    pub fn pod(&mut self, node: u8, spec: PodSpec) -> Result<usize, MeshError> {
        let pod = self.topo.add_pod(node, &spec.name)?;
        self.pods.push((spec, pod));
        Ok(self.pods.len() - 1)
    }

    /// The address of pod `i` (known as soon as it is added).
    pub fn pod_ip(&self, i: usize) -> std::net::Ipv4Addr {
        self.pods[i].1.ip
    }

    /// YAML appended to the generated `workloads:` section (e.g. `services:`, `authorizationPolicies:`).
    pub fn yaml(&mut self, extra: &str) -> &mut Self {
        self.extra = extra.to_owned();
        self
    }

    /// Writes the config, starts a ztunnel per node, enrols pods, and waits until they are served.
    pub fn start(self) -> Result<Mesh, MeshError> {
        let ca = CertificateAuthority::generate(mesh_identity::DEFAULT_TRUST_DOMAIN)?;
        let ca_cert = self.dir.path().join("ca.pem");
        let ca_key = self.dir.path().join("ca-key.pem");
        std::fs::write(&ca_cert, ca.cert_pem())?;
        std::fs::write(&ca_key, ca.key_pem())?;
        let config = self.dir.path().join("ztunnel.yaml");
        let control = match self.control {
            true => Some(ControlPlane::start(
                &self.topo.nodes()[0],
                self.dir.path(),
                &ca.cert_pem(),
                &ca.key_pem(),
            )?),
            false => None,
        };
        let mut mesh = Mesh {
            nodes: Vec::new(),
            control,
            pods: self.pods,
            extra: self.extra,
            config,
            ca,
            ca_cert,
            ca_key,
            dir: self.dir,
            topo: self.topo,
        };
        mesh.write_config()?;
        for node in mesh.topo.nodes() {
            let n = node::MeshNode::start(node, &mesh)?;
            mesh.nodes.push(n);
        }
        for i in 0..mesh.pods.len() {
            if mesh.pods[i].0.enrolled {
                mesh.enroll(i)?;
            }
        }
        Ok(mesh)
    }
}

/// A running mesh. Dropping it stops the ztunnels and removes every namespace.
pub struct Mesh {
    // Field order matters for Drop: processes and servers before namespaces.
    nodes: Vec<MeshNode>,
    control: Option<ControlPlane>,
    pods: Vec<(PodSpec, Pod)>,
    extra: String,
    config: PathBuf,
    ca: CertificateAuthority,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    dir: tempfile::TempDir,
    topo: Topology,
}

impl Mesh {
    /// The pod added as number `i`.
    pub fn pod(&self, i: usize) -> &Pod {
        &self.pods[i].1
    }

    /// The pod named `name`, if any.
    pub fn pod_named(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().map(|(_, p)| p).find(|p| p.name == name)
    }

    /// The mesh CA (to issue certificates for hand-made clients).
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The topology underneath.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Node `n` (1-based) of the mesh.
    pub fn node(&self, n: u8) -> &MeshNode {
        &self.nodes[usize::from(n) - 1]
    }

    /// A scratch directory removed with the mesh.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Replaces the extra YAML and waits until every ztunnel has loaded the new config.
    pub fn update_yaml(&mut self, extra: &str) -> Result<(), MeshError> {
        let before: Vec<u64> = self.nodes.iter().map(MeshNode::config_version).collect();
        self.extra = extra.to_owned();
        self.write_config()?;
        for (node, v) in self.nodes.iter().zip(before) {
            node.wait_config_version(v + 1)?;
        }
        Ok(())
    }

    /// Writes an invalid extra YAML and checks that no ztunnel loads it (their version stays) for a few
    /// config poll periods; the previous extra YAML is kept as the mesh's notion of the config.
    pub fn write_rejected_yaml(&mut self, extra: &str) -> Result<(), MeshError> {
        let before: Vec<u64> = self.nodes.iter().map(MeshNode::config_version).collect();
        let good = std::mem::replace(&mut self.extra, extra.to_owned());
        self.write_config()?;
        self.extra = good;
        std::thread::sleep(REJECT_SETTLE);
        for (node, v) in self.nodes.iter().zip(before) {
            let now = node.config_version();
            if now != v {
                return Err(MeshError::Node {
                    node: 0,
                    what: format!("invalid config loaded: version {v} -> {now}"),
                });
            }
        }
        Ok(())
    }

    /// Enrols pod `i`: redirect rules in its netns, then handoff to its node's ztunnel.
    pub fn enroll(&self, i: usize) -> Result<(), MeshError> {
        let (spec, pod) = &self.pods[i];
        self.node(pod.node).enroll(spec, pod)
    }

    /// Removes pod `i` from the mesh: ztunnel releases it, its rules are removed.
    pub fn unenroll(&self, i: usize) -> Result<(), MeshError> {
        let (spec, pod) = &self.pods[i];
        self.node(pod.node).unenroll(spec, pod)
    }

    /// The control plane, when the mesh was built [`MeshBuilder::with_control`].
    pub fn control(&self) -> Option<&ControlPlane> {
        self.control.as_ref()
    }

    /// Stops control; the ztunnels keep their last config.
    pub fn stop_control(&mut self) -> Result<(), MeshError> {
        match &mut self.control {
            Some(c) => c.stop(),
            None => Ok(()),
        }
    }

    /// Starts control again.
    pub fn restart_control(&mut self) -> Result<(), MeshError> {
        match &mut self.control {
            Some(c) => c.restart(&self.topo.nodes()[0]),
            None => Ok(()),
        }
    }

    /// Replaces the extra YAML (control mode: written even while control is down) and, when `wait` names nodes,
    /// waits until their ztunnels loaded a newer config (with control, only nodes the change concerns get one).
    pub fn update_extra(&mut self, extra: &str, wait: &[u8]) -> Result<(), MeshError> {
        let before: Vec<u64> = wait
            .iter()
            .map(|n| self.node(*n).config_version())
            .collect();
        self.extra = extra.to_owned();
        self.write_config()?;
        for (n, v) in wait.iter().zip(before) {
            self.node(*n).wait_config_version(v + 1)?;
        }
        Ok(())
    }

    fn write_config(&self) -> Result<(), MeshError> {
        if let Some(c) = &self.control {
            return c.write_config(&self.pods, &self.extra);
        }
        let text = render(self.pods.iter().map(|(s, p)| (s, p)), &self.extra);
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.config)?;
        Ok(())
    }
}
