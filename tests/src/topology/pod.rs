//! A pod: a network namespace wired point-to-point to its node.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::Command;

use super::{ETH0, Node, TopologyError, pod_gateway};
use crate::netns::{Netns, NetnsError};
use crate::process::Process;

/// A pod of a [`super::Topology`]. Dropping it kills its processes and removes its namespace
/// (the veth and the node's host route go with it).
#[derive(Debug)]
pub struct Pod {
    /// The pod's namespace.
    pub netns: Netns,
    /// The pod name given to [`super::Topology::add_pod`].
    pub name: String,
    /// The pod's address (`10.<node>.0.x`).
    pub ip: Ipv4Addr,
    /// The node number the pod runs on.
    pub node: u8,
    /// The pod's veth inside the node namespace (`vp<x>`).
    pub host_iface: String,
}

impl Pod {
    pub(super) fn create(
        tag: &str,
        node: &Node,
        name: &str,
        host: u8,
    ) -> Result<Pod, TopologyError> {
        let n = node.index;
        let netns = Netns::new(&format!("{tag}-n{n}-{name}"))?;
        let ip = Ipv4Addr::new(10, n, 0, host);
        let gw = pod_gateway(n);
        let host_iface = format!("vp{host}");
        node.netns.ip(&[
            "link",
            "add",
            &host_iface,
            "type",
            "veth",
            "peer",
            "name",
            ETH0,
            "netns",
            netns.name(),
        ])?;
        node.netns.ip_batch(&[
            format!("addr add {gw}/32 dev {host_iface}"),
            format!("link set {host_iface} up"),
            format!("route add {ip}/32 dev {host_iface} scope link"),
        ])?;
        netns.ip_batch(&[
            format!("addr add {ip}/32 dev {ETH0}"),
            format!("link set {ETH0} up"),
            format!("route add {gw}/32 dev {ETH0} scope link"),
            format!("route add default via {gw} dev {ETH0}"),
        ])?;
        Ok(Pod {
            netns,
            name: name.to_owned(),
            ip,
            node: n,
            host_iface,
        })
    }

    /// A command running `program` inside the pod with the environment local mode gives pods:
    /// `POD_NAME`, `POD_IP`, `NODE_NAME`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = self.netns.command(program);
        c.env("POD_NAME", &self.name)
            .env("POD_IP", self.ip.to_string())
            .env("NODE_NAME", format!("node-{}", self.node));
        c
    }

    /// Starts a long-running `program args` inside the pod (with the pod environment).
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Process, NetnsError> {
        let mut c = self.command(program);
        c.args(args);
        self.netns.spawn_command(&self.name, c)
    }
}
