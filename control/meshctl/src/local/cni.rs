//! The CNI chain of a local cluster's nodes, prepared by `up` for the pod runtime: a plugin
//! directory (`<state>/cni/bin`: the standard `bridge`, `host-local`, `loopback` and our
//! `mesh-cni`) and per node a conflist (`<state>/node-N/cni.conflist`): bridge `cni0` with
//! gateway `10.N.0.1` and host-local IPAM from the node's pod CIDR, then `mesh-cni` talking to the
//! node agent's socket. A runtime invokes it like a container runtime would.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::network::{node_name, pod_cidr};
use super::sys::CNI_PLUGIN_DIR;
use super::{LocalError, io};

/// The bridge the CNI `bridge` plugin creates in each node namespace.
pub const CNI_BRIDGE: &str = "cni0";
/// Standard plugins linked into the chain's plugin directory.
const STANDARD_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];

/// The chain's plugin directory (`CNI_PATH`) of state dir `dir`.
pub fn bin_dir(dir: &Path) -> PathBuf {
    dir.join("cni/bin")
}

/// The conflist file of node `n`.
pub fn conflist_path(dir: &Path, n: u8) -> PathBuf {
    dir.join(node_name(n)).join("cni.conflist")
}

/// The conflist of node `n`; see the module documentation.
pub fn conflist(dir: &Path, n: u8) -> Value {
    let node_dir = dir.join(node_name(n));
    json!({
        "cniVersion": "1.0.0",
        "name": "meshctl-local",
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
                    "ranges": [[{"subnet": pod_cidr(n), "gateway": format!("10.{n}.0.1")}]],
                    "dataDir": node_dir.join("ipam"),
                }
            },
            {"type": "mesh-cni", "agentSocket": node_dir.join("cni.sock"), "timeoutMs": 15000}
        ]
    })
}

/// Links the plugins into [`bin_dir`] and writes every node's conflist.
pub fn prepare(dir: &Path, nodes: u8, mesh_cni: &Path) -> Result<(), LocalError> {
    let bin = bin_dir(dir);
    std::fs::create_dir_all(&bin).map_err(io(format!("create {}", bin.display())))?;
    let links = STANDARD_PLUGINS
        .iter()
        .map(|p| (Path::new(CNI_PLUGIN_DIR).join(p), bin.join(p)))
        .chain([(mesh_cni.to_path_buf(), bin.join("mesh-cni"))]);
    for (target, link) in links {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).map_err(io(format!(
            "link {} to {}",
            link.display(),
            target.display()
        )))?;
    }
    for n in 1..=nodes {
        let path = conflist_path(dir, n);
        let text = serde_json::to_vec_pretty(&conflist(dir, n))
            .map_err(|e| io("render a conflist")(std::io::Error::other(e)))?;
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    Ok(())
}

/// A pod's identity as a container runtime passes it to the chain (CNI_ARGS, CNI_CONTAINERID).
#[derive(Debug, Clone)]
pub struct PodArgs {
    /// K8S_POD_NAMESPACE.
    pub namespace: String,
    /// K8S_POD_NAME.
    pub name: String,
    /// K8S_POD_UID.
    pub uid: String,
    /// CNI_CONTAINERID (the sandbox id).
    pub container_id: String,
}

/// Runs the chain of node `n` for `command` (`ADD`: plugins in order, each getting the previous
/// result; `DEL`: in reverse with `prev`) inside the node's namespace `node_ns`, for the pod
/// namespace `/run/netns/<pod_ns>`, as a container runtime does. Returns the final result.
pub fn invoke(
    dir: &Path,
    n: u8,
    node_ns: &str,
    command: &str,
    pod_ns: &str,
    pod: &PodArgs,
    prev: Option<&Value>,
) -> Result<Value, LocalError> {
    let path = conflist_path(dir, n);
    let conflist: Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            io(format!("read the conflist {}", path.display()))(std::io::ErrorKind::NotFound.into())
        })?;
    let mut plugins = conflist["plugins"].as_array().cloned().unwrap_or_default();
    let del = command == "DEL";
    if del {
        plugins.reverse();
    }
    let mut result = prev.cloned();
    for plugin in plugins {
        let mut conf = plugin.clone();
        conf["cniVersion"] = conflist["cniVersion"].clone();
        conf["name"] = conflist["name"].clone();
        if let Some(p) = &result {
            conf["prevResult"] = p.clone();
        }
        let ty = plugin["type"].as_str().unwrap_or_default().to_owned();
        let out = run_plugin(dir, node_ns, command, &ty, &conf, pod_ns, pod)?;
        if !del {
            result =
                Some(
                    serde_json::from_str(&out).map_err(|e| super::sys::SysError::Command {
                        cmd: format!("CNI {command} {ty}"),
                        detail: format!("result is not JSON ({e}): {out}"),
                    })?,
                );
        }
    }
    Ok(result.unwrap_or(Value::Null))
}

fn run_plugin(
    dir: &Path,
    node_ns: &str,
    command: &str,
    ty: &str,
    conf: &Value,
    pod_ns: &str,
    pod: &PodArgs,
) -> Result<String, LocalError> {
    use std::io::Write;
    let bin = bin_dir(dir);
    let fail = |detail: String| super::sys::SysError::Command {
        cmd: format!("CNI {command} {ty} for pod {}/{}", pod.namespace, pod.name),
        detail,
    };
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(bin.join(ty))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                pod.namespace, pod.name, pod.container_id, pod.uid
            ),
        )
        .env("CNI_PATH", &bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(fail(format!(
            "{} {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    Ok(stdout)
}

/// The first IPv4 address of a CNI result.
pub fn result_ip(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_chain_is_bridge_with_host_local_then_mesh_cni_on_the_agent_socket() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node-2")).unwrap();
        std::fs::create_dir_all(dir.path().join("node-1")).unwrap();
        prepare(dir.path(), 2, Path::new("/bin/true")).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(conflist_path(dir.path(), 2)).unwrap()).unwrap();
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins[0]["type"], "bridge");
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.2.0.0/24");
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["gateway"], "10.2.0.1");
        assert_eq!(plugins[1]["type"], "mesh-cni");
        let sock = plugins[1]["agentSocket"].as_str().unwrap();
        assert!(sock.ends_with("node-2/cni.sock"), "{sock}");
        let link = std::fs::read_link(bin_dir(dir.path()).join("mesh-cni")).unwrap();
        assert_eq!(link, Path::new("/bin/true"));
        assert!(
            bin_dir(dir.path())
                .join("host-local")
                .symlink_metadata()
                .is_ok()
        );
    }
}
