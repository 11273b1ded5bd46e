//! Invoking a CNI chain the way a container runtime does: for each plugin of a conflist, run
//! `<CNI_PATH>/<type>` (inside the node's namespace) with the CNI_* environment and the plugin's
//! config plus `prevResult` on stdin; DEL runs the plugins in reverse order with the cached
//! result. The chain of these tests is Debian's `bridge` + `host-local`, then `mesh-cni`.
//!
//! [`cluster::CniCluster`] builds on it: nodes with a real node agent and ztunnel each, pods
//! created through the chain.

pub mod cluster;
pub mod pod;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cmd::{self, CmdOutput};
use crate::netns::Netns;
use crate::topology::pod_cidr;

/// Where Debian's containernetworking-plugins are installed.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";
/// Bridge the chain creates in each node.
pub const CNI_BRIDGE: &str = "cni0";
/// Deadline of one plugin run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of running a chain.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A plugin returned an error (its CNI error JSON is in `stdout`).
    #[error("CNI plugin {plugin} {command} failed (exit {code:?}): {stdout} {stderr}")]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL, CHECK.
        command: String,
        /// Exit code.
        code: Option<i32>,
        /// Its stdout (CNI error JSON).
        stdout: String,
        /// Its stderr.
        stderr: String,
    },
    /// A plugin could not be run.
    #[error("running CNI plugin {plugin}: {detail}")]
    Run {
        /// The plugin type.
        plugin: String,
        /// What failed.
        detail: String,
    },
}

/// A pod's identity as the runtime passes it in CNI_ARGS.
#[derive(Debug, Clone)]
pub struct PodArgs {
    /// K8S_POD_NAME.
    pub name: String,
    /// K8S_POD_NAMESPACE.
    pub namespace: String,
    /// K8S_POD_UID.
    pub uid: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
}

/// A conflist and the directory its plugins are found in.
#[derive(Debug, Clone)]
pub struct CniChain {
    /// The network config list.
    pub conflist: Value,
    /// CNI_PATH: a directory with `bridge`, `host-local` and `mesh-cni`.
    pub cni_path: PathBuf,
}

/// Makes `dir` a CNI_PATH: links to the system plugins and to `mesh_cni`.
pub fn prepare_cni_path(dir: &Path, mesh_cni: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for plugin in ["bridge", "host-local", "loopback"] {
        let link = dir.join(plugin);
        if !link.exists() {
            std::os::unix::fs::symlink(Path::new(SYSTEM_CNI_DIR).join(plugin), link)?;
        }
    }
    let link = dir.join("mesh-cni");
    if !link.exists() {
        std::os::unix::fs::symlink(mesh_cni, link)?;
    }
    Ok(())
}

/// The conflist of node `n`: bridge `cni0` with gateway `10.n.0.1` and host-local IPAM from
/// the node's pod CIDR (state in `ipam_dir`), then `mesh-cni` talking to `agent_socket`.
pub fn node_conflist(n: u8, ipam_dir: &Path, agent_socket: &Path) -> Value {
    let (net, len) = pod_cidr(n);
    json!({
        "cniVersion": "1.0.0",
        "name": "mesh-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": true,
                "isDefaultGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{net}/{len}"), "gateway": crate::topology::pod_gateway(n).to_string()}]],
                    "dataDir": ipam_dir,
                }
            },
            {"type": "mesh-cni", "agentSocket": agent_socket, "timeoutMs": 15000}
        ]
    })
}

impl CniChain {
    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// ADD: every plugin in order, each getting the previous result; returns the final result.
    pub fn add(&self, node: &Netns, pod_ns: &Path, pod: &PodArgs) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            let out = self.invoke(node, "ADD", &plugin, prev.as_ref(), pod_ns, pod)?;
            prev = Some(serde_json::from_str(&out).map_err(|e| CniError::Run {
                plugin: plugin_type(&plugin),
                detail: format!("result is not JSON ({e}): {out}"),
            })?);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// CHECK: every plugin in order with the cached result.
    pub fn check(
        &self,
        node: &Netns,
        pod_ns: &Path,
        pod: &PodArgs,
        result: &Value,
    ) -> Result<(), CniError> {
        for plugin in self.plugins() {
            self.invoke(node, "CHECK", &plugin, Some(result), pod_ns, pod)?;
        }
        Ok(())
    }

    /// DEL: every plugin in reverse order with the cached result.
    pub fn del(
        &self,
        node: &Netns,
        pod_ns: &Path,
        pod: &PodArgs,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        for plugin in self.plugins().iter().rev() {
            self.invoke(node, "DEL", plugin, result, pod_ns, pod)?;
        }
        Ok(())
    }

    fn invoke(
        &self,
        node: &Netns,
        command: &str,
        plugin: &Value,
        prev: Option<&Value>,
        pod_ns: &Path,
        pod: &PodArgs,
    ) -> Result<String, CniError> {
        let mut conf = plugin.clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        conf["name"] = self.conflist["name"].clone();
        if let Some(p) = prev {
            conf["prevResult"] = p.clone();
        }
        let ty = plugin_type(plugin);
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", pod.container_id.clone()),
            ("CNI_NETNS", pod_ns.display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            (
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    pod.namespace, pod.name, pod.container_id, pod.uid
                ),
            ),
            ("CNI_PATH", self.cni_path.display().to_string()),
        ];
        let out = run_plugin(
            node,
            &self.cni_path.join(&ty),
            &env,
            conf.to_string().as_bytes(),
        )
        .map_err(|detail| CniError::Run {
            plugin: ty.clone(),
            detail,
        })?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(CniError::Plugin {
                plugin: ty,
                command: command.into(),
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }
}

fn plugin_type(plugin: &Value) -> String {
    plugin["type"].as_str().unwrap_or_default().to_string()
}

/// Runs one plugin binary inside `node` with exactly the CNI environment `env` (plus PATH).
pub fn run_plugin(
    node: &Netns,
    binary: &Path,
    env: &[(&str, String)],
    stdin: &[u8],
) -> Result<CmdOutput, String> {
    let mut c = node.command(binary);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    cmd::run(&mut c, Some(stdin), PLUGIN_TIMEOUT).map_err(|e| e.to_string())
}

/// The first sandbox IPv4 address of a CNI result.
pub fn result_ip(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
}
