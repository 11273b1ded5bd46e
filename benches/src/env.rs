//! The network a benchmark runs in: two nodes, a client pod on node 1, a server pod on node 2.

use std::path::PathBuf;

use anyhow::Context;
use mesh_testbed::{Pod, Topology};

/// Node of the client pod.
pub const CLIENT_NODE: u8 = 1;
/// Node of the server pod (another node, so traffic crosses the fabric).
pub const SERVER_NODE: u8 = 2;

/// A fresh topology with one client and one server pod. Everything is removed on drop.
#[derive(Debug)]
pub struct BenchEnv {
    /// The pod running the load generators.
    pub client: Pod,
    /// The pod running the servers.
    pub server: Pod,
    /// Nodes and fabric (dropped after the pods).
    pub topology: Topology,
    /// Executable to run as the test application: `<it> testapp serve|send|connrate ...`.
    pub testapp: PathBuf,
}

impl BenchEnv {
    /// Builds the topology; `tag` goes into the namespace names.
    pub fn new(tag: &str, testapp: PathBuf) -> anyhow::Result<BenchEnv> {
        let topology = Topology::new(tag, 2).context("cannot build the benchmark topology")?;
        let client = topology
            .add_pod(CLIENT_NODE, "client")
            .context("cannot create the client pod")?;
        let server = topology
            .add_pod(SERVER_NODE, "server")
            .context("cannot create the server pod")?;
        // Many short connections from one client: reuse TIME_WAIT ports and widen the range on
        // every side that connects. Directly that is the client app; through a proxy also the
        // proxy's connection to the server app, made in the server pod and closed first there
        // (it passes on the client's half-close), so its TIME_WAIT sockets fill the server pod's
        // port range: with the default sysctls the proxies' connection rate fell by a third
        // within a five-second run. Both sysctls are per namespace: the pods only.
        for pod in [&client, &server] {
            pod.netns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
            pod.netns
                .sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
        }
        Ok(BenchEnv {
            client,
            server,
            topology,
            testapp,
        })
    }
}
