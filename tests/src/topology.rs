//! A small cluster of "nodes" joined by a fabric, with "pods" on them, all in network namespaces.
//!
//! Layout (N = node number, 1-based):
//! - a fabric namespace holding bridge `br0`, with one veth port `n<N>` per node;
//! - node N: namespace with `eth0` = [`node_ip`]`(N)`/24 on the fabric, `ip_forward=1` (set
//!   inside the node namespace only), and a route to every other node's pod CIDR via that node;
//! - pod CIDR of node N: [`pod_cidr`]`(N)` = `10.N.0.0/24`; the node owns `10.N.0.1` (gateway).
//! - a pod: namespace with `eth0` = `10.N.0.x/32`, loopback up, a host route to the gateway and
//!   a default route via it; on the node its veth `vp<x>` carries the gateway address and a
//!   `/32` host route to the pod (point-to-point wiring, like the CNI `ptp` plugin).
//!
//! Everything lives in namespaces created here; the root namespace gets no address, route or
//! link. Dropping the [`Topology`] (and the [`Pod`]s) removes it all, even during a panic.

mod pod;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};

pub use pod::Pod;

use crate::netns::{self, Netns, NetnsError};

/// The most nodes a topology can have (node numbers become IPv4 octets).
pub const MAX_NODES: u8 = 250;
/// Interface of a node (and of a pod) that faces the fabric (the node) .
pub const ETH0: &str = "eth0";
/// The bridge inside the fabric namespace.
pub const FABRIC_BRIDGE: &str = "br0";
/// First host number given to a pod in its node's /24 (.1 is the node's gateway address).
const FIRST_POD_HOST: u8 = 2;

/// Errors of building a topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A namespace operation failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The node count is out of range.
    #[error("a topology needs 1..={MAX_NODES} nodes, {0} were asked for")]
    NodeCount(usize),
    /// A node number does not exist.
    #[error("no node {node} in this topology (nodes are numbered 1..={count})")]
    UnknownNode {
        /// The requested node.
        node: u8,
        /// How many nodes exist.
        count: usize,
    },
    /// The node's pod CIDR has no free address left.
    #[error("node {0} has no free pod address left in its /24")]
    PodCidrFull(u8),
}

/// The fabric address of node `n`: `172.30.0.n`.
pub fn node_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 30, 0, n)
}

/// The pod CIDR of node `n`: `10.n.0.0/24` (network address and prefix length).
pub fn pod_cidr(n: u8) -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(10, n, 0, 0), 24)
}

/// The gateway address pods of node `n` route through: `10.n.0.1`.
pub fn pod_gateway(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, n, 0, 1)
}

/// One node: a namespace joined to the fabric, routing for its pods.
#[derive(Debug)]
pub struct Node {
    /// The node's namespace (run ztunnel, node agents, captures here).
    pub netns: Netns,
    /// The node number (1-based).
    pub index: u8,
    /// The node's fabric address.
    pub ip: Ipv4Addr,
    next_host: AtomicU8,
}

impl Node {
    /// `node-<index>`, the name local mode gives this node.
    pub fn name(&self) -> String {
        format!("node-{}", self.index)
    }

    /// The node's interface on the fabric (capture inter-node traffic here).
    pub fn fabric_iface(&self) -> &'static str {
        ETH0
    }

    fn allocate_host(&self) -> Result<u8, TopologyError> {
        self.next_host
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                (h < 255).then(|| h + 1)
            })
            .map_err(|_| TopologyError::PodCidrFull(self.index))
    }
}

/// Nodes, fabric and the namespaces behind them; see the module documentation.
#[derive(Debug)]
pub struct Topology {
    tag: String,
    // Field order is drop order: nodes go before the fabric they hang off.
    nodes: Vec<Node>,
    fabric: Netns,
}

impl Topology {
    /// Builds `nodes` nodes joined by a fabric. `tag` goes into every namespace name so that
    /// leftovers can be traced to a test. Stale namespaces of killed test runs are swept first.
    pub fn new(tag: &str, nodes: usize) -> Result<Topology, TopologyError> {
        let count = u8::try_from(nodes)
            .ok()
            .filter(|n| (1..=MAX_NODES).contains(n))
            .ok_or(TopologyError::NodeCount(nodes))?;
        netns::sweep_stale();
        let fabric = Netns::new(&format!("{tag}-fabric"))?;
        fabric.ip_batch(&[
            format!("link add {FABRIC_BRIDGE} type bridge"),
            format!("link set {FABRIC_BRIDGE} up"),
        ])?;
        let mut topo = Topology {
            tag: tag.to_owned(),
            nodes: Vec::new(),
            fabric,
        };
        for n in 1..=count {
            let node = topo.add_node(n)?;
            topo.nodes.push(node);
        }
        for node in &topo.nodes {
            let routes: Vec<String> = (1..=count)
                .filter(|&m| m != node.index)
                .map(|m| {
                    let (net, len) = pod_cidr(m);
                    format!("route add {net}/{len} via {} dev {ETH0}", node_ip(m))
                })
                .collect();
            if !routes.is_empty() {
                node.netns.ip_batch(&routes)?;
            }
        }
        Ok(topo)
    }

    fn add_node(&self, n: u8) -> Result<Node, TopologyError> {
        let netns = Netns::new(&format!("{}-node{n}", self.tag))?;
        let port = format!("n{n}");
        self.fabric.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ETH0,
            "netns",
            netns.name(),
        ])?;
        self.fabric.ip_batch(&[
            format!("link set {port} master {FABRIC_BRIDGE}"),
            format!("link set {port} up"),
        ])?;
        netns.ip_batch(&[
            format!("addr add {}/24 dev {ETH0}", node_ip(n)),
            format!("link set {ETH0} up"),
        ])?;
        netns.sysctl("net.ipv4.ip_forward", "1")?;
        Ok(Node {
            netns,
            index: n,
            ip: node_ip(n),
            next_host: AtomicU8::new(FIRST_POD_HOST),
        })
    }

    /// The fabric namespace (holds the bridge; no addresses).
    pub fn fabric(&self) -> &Netns {
        &self.fabric
    }

    /// All nodes, in order (`nodes()[0]` is node 1).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node number `n` (1-based).
    pub fn node(&self, n: u8) -> Result<&Node, TopologyError> {
        usize::from(n)
            .checked_sub(1)
            .and_then(|i| self.nodes.get(i))
            .ok_or(TopologyError::UnknownNode {
                node: n,
                count: self.nodes.len(),
            })
    }

    /// Creates pod `name` on node `n` (1-based) with the next free address of the node's CIDR.
    /// The pod is removed when the returned [`Pod`] drops.
    pub fn add_pod(&self, n: u8, name: &str) -> Result<Pod, TopologyError> {
        let node = self.node(n)?;
        let host = node.allocate_host()?;
        Pod::create(&self.tag, node, name, host)
    }
}
