//! The node-side rule of DESIGN.md 4.4: TCP from a local host socket (the kubelet's probes) to an
//! enrolled pod IP is SNATed to [`PROBE_SOURCE`], so the pod's rules let it skip the proxy.
//!
//! One rule matches a set of pod IPs; enrolling or releasing a pod only adds or removes its IP.
//! "From a local host socket" means the packet has a socket of this namespace attached: packets
//! forwarded from other namespaces (pods, other nodes) do not, so only host processes are SNATed.

use std::net::Ipv4Addr;

use super::{Backend, PROBE_SOURCE, RulesError};
use crate::netns::Netns;

pub mod iptables;
pub mod nft;

/// Key of the SNAT rule(s) in comments.
pub const COMMENT: &str = "mesh:host-probe-snat";

/// Ensures the SNAT rule exists in the node netns `node` and adds `ip` to the enrolled set.
/// Idempotent.
pub fn add_pod_ip(node: &Netns, backend: Backend, ip: Ipv4Addr) -> Result<(), RulesError> {
    match backend {
        Backend::Nft => nft::add_pod_ip(node, ip),
        Backend::Iptables => iptables::add_pod_ip(node, ip),
    }
}

/// Removes `ip` from the enrolled set (nothing happens if it is not there).
pub fn remove_pod_ip(node: &Netns, backend: Backend, ip: Ipv4Addr) -> Result<(), RulesError> {
    match backend {
        Backend::Nft => nft::remove_pod_ip(node, ip),
        Backend::Iptables => iptables::remove_pod_ip(node, ip),
    }
}

/// The enrolled pod IPs currently SNATed, sorted.
pub fn pod_ips(node: &Netns, backend: Backend) -> Result<Vec<Ipv4Addr>, RulesError> {
    let mut ips = match backend {
        Backend::Nft => nft::pod_ips(node)?,
        Backend::Iptables => iptables::pod_ips(node)?,
    };
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Removes the host-side table/chain entirely (e.g. when the node agent is uninstalled).
pub fn uninstall(node: &Netns, backend: Backend) -> Result<(), RulesError> {
    match backend {
        Backend::Nft => nft::uninstall(node),
        Backend::Iptables => iptables::uninstall(node),
    }
}

/// The SNAT target, shared by both backends.
fn snat_to() -> String {
    PROBE_SOURCE.to_string()
}
