//! The nodes of a local cluster and the fabric between them, all in network namespaces.
//!
//! - fabric namespace `meshctl-<id>-fabric` with bridge `br0` and one veth port `n<N>` per node;
//! - node N: namespace `meshctl-<id>-node-N`, `eth0` = [`node_ip`]`(N)/24` on the fabric,
//!   `ip_forward=1` set inside the node namespace only, a route to every other node's pod CIDR
//!   ([`pod_cidr`]) via that node.
//!
//! Nothing is configured in the root namespace: deleting the namespaces removes every link,
//! address, route and rule of the cluster.

use std::net::Ipv4Addr;

use super::sys::{self, SysError};

/// The bridge inside the fabric namespace.
pub const FABRIC_BRIDGE: &str = "br0";
/// A node's interface on the fabric.
pub const NODE_IFACE: &str = "eth0";

/// Prefix of every namespace of cluster `id`.
pub fn netns_prefix(id: &str) -> String {
    format!("meshctl-{id}-")
}

/// The fabric namespace of cluster `id`.
pub fn fabric_netns(id: &str) -> String {
    format!("{}fabric", netns_prefix(id))
}

/// The namespace of node `n` of cluster `id` (contains the node name `node-<n>`).
pub fn node_netns(id: &str, n: u8) -> String {
    format!("{}{}", netns_prefix(id), node_name(n))
}

/// `node-<n>`.
pub fn node_name(n: u8) -> String {
    format!("node-{n}")
}

/// The fabric address of node `n`: `172.30.0.n`.
pub fn node_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, n)
}

/// The pod CIDR of node `n`: `10.n.0.0/24`.
pub fn pod_cidr(n: u8) -> String {
    format!("10.{n}.0.0/24")
}

/// Creates namespace `name` with its loopback up. `record` is called with the name before it
/// exists, so that a crash right after still leaves it in the state file.
pub fn create_netns(
    name: &str,
    record: &mut dyn FnMut(&str) -> Result<(), super::LocalError>,
) -> Result<(), super::LocalError> {
    record(name)?;
    sys::run("ip", &["netns", "add", name])?;
    sys::ip_batch(name, &["link set lo up".to_owned()])?;
    Ok(())
}

/// Creates the fabric's bridge.
pub fn setup_fabric(fabric: &str) -> Result<(), SysError> {
    sys::ip_batch(
        fabric,
        &[
            format!("link add {FABRIC_BRIDGE} type bridge"),
            format!("link set {FABRIC_BRIDGE} up"),
        ],
    )
}

/// Joins node `n` (namespace `node_ns`, already created) of a `count`-node cluster to the fabric,
/// addresses it, enables forwarding inside it and routes the other nodes' pod CIDRs.
pub fn setup_node(fabric: &str, node_ns: &str, n: u8, count: u8) -> Result<(), SysError> {
    let port = format!("n{n}");
    sys::ip_batch(
        fabric,
        &[
            format!("link add {port} type veth peer name {NODE_IFACE} netns {node_ns}"),
            format!("link set {port} master {FABRIC_BRIDGE}"),
            format!("link set {port} up"),
        ],
    )?;
    let mut lines = vec![
        format!("addr add {}/24 dev {NODE_IFACE}", node_ip(n)),
        format!("link set {NODE_IFACE} up"),
    ];
    lines.extend((1..=count).filter(|&m| m != n).map(|m| {
        format!(
            "route add {} via {} dev {NODE_IFACE}",
            pod_cidr(m),
            node_ip(m)
        )
    }));
    sys::ip_batch(node_ns, &lines)?;
    sys::run(
        "ip",
        &[
            "netns",
            "exec",
            node_ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_cluster_id_and_the_node_name() {
        assert_eq!(node_netns("ab12", 3), "meshctl-ab12-node-3");
        assert!(node_netns("ab12", 3).starts_with(&netns_prefix("ab12")));
        assert!(fabric_netns("ab12").starts_with(&netns_prefix("ab12")));
        assert_eq!(node_ip(2), Ipv4Addr::new(172, 30, 0, 2));
        assert_eq!(pod_cidr(2), "10.2.0.0/24");
    }
}
