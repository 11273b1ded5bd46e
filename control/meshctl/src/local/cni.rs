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
