//! `cni_netconf`: the network config a container runtime writes to the plugin's stdin (with the
//! previous plugin's result), and the `CNI_ARGS` text from its environment.

use mesh_cni::plugin::config::{NetConf, reply_version};
use mesh_cni::plugin::env::parse_args;

/// Parses `data` as stdin and, as text, as `CNI_ARGS`.
pub fn cni_netconf(data: &[u8]) {
    let version = reply_version(data);
    assert!(!version.is_empty(), "a reply always carries a version");
    if let Ok(conf) = NetConf::parse(data) {
        let _ = conf.pod_ips();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_args(text);
    }
}
