//! The floor under any node proxy: the same three TCP legs as through the mesh (client to a
//! local relay over loopback, relay to relay across the nodes, relay to the server over
//! loopback) and two user-space hops, but plain TCP: no TLS, no HTTP/2, no policy. What the
//! mesh costs on top of this column is the price of HBONE; what this column costs on top of
//! `direct` is the price of relaying at all on this machine.

use std::net::SocketAddr;

use anyhow::Context;
use mesh_testbed::Process;
use mesh_testbed::testapp::cli::READY_LINE;

use super::Variant;
use crate::env::BenchEnv;
use crate::measure::{ECHO_PORT, HTTP_PORT, IPERF_PORT, SOCKPERF_PORT};

/// The server pod's relay listens on `port + SERVER_OFFSET` for server port `port`.
const SERVER_OFFSET: u16 = 10_000;
/// The client pod's relay listens on 127.0.0.1:`port + CLIENT_OFFSET`.
const CLIENT_OFFSET: u16 = 20_000;
/// Threads of each relay, like ztunnel's default data-path workers.
const WORKERS: &str = "2";
/// How long a relay gets to listen.
const START: std::time::Duration = std::time::Duration::from_secs(10);

/// A plain relay process in each pod.
#[derive(Default)]
pub struct Relay {
    procs: Vec<Process>,
    splice: bool,
}

impl Relay {
    /// The same relays moving bytes with `splice(2)`, never through user space: the upper bound
    /// of any proxy that terminates TCP here (one that encrypts must copy the bytes out and in).
    pub fn splice() -> Self {
        Relay {
            procs: Vec::new(),
            splice: true,
        }
    }
}

impl Variant for Relay {
    fn name(&self) -> &str {
        if self.splice { "splice" } else { "relay" }
    }

    fn setup(&mut self, env: &BenchEnv) -> anyhow::Result<()> {
        let ports = [IPERF_PORT, SOCKPERF_PORT, ECHO_PORT, HTTP_PORT];
        let server_routes = ports.map(|p| {
            format!(
                "{}={}",
                SocketAddr::from((env.server.ip, p + SERVER_OFFSET)),
                SocketAddr::from(([127, 0, 0, 1], p))
            )
        });
        let client_routes = ports.map(|p| {
            format!(
                "{}={}",
                SocketAddr::from(([127, 0, 0, 1], p + CLIENT_OFFSET)),
                SocketAddr::from((env.server.ip, p + SERVER_OFFSET))
            )
        });
        for (pod, routes) in [(&env.server, server_routes), (&env.client, client_routes)] {
            let mut args = vec![
                crate::TESTAPP_SUBCOMMAND.to_owned(),
                "relay".into(),
                "--workers".into(),
                WORKERS.into(),
            ];
            for r in routes {
                args.extend(["--route".into(), r]);
            }
            if self.splice {
                args.push("--splice".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut p = pod.spawn(&env.testapp, &args)?;
            p.wait_for_output(READY_LINE, START)
                .with_context(|| format!("relay in {} did not start", pod.name))?;
            self.procs.push(p);
        }
        Ok(())
    }

    fn target(&self, _env: &BenchEnv, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port + CLIENT_OFFSET))
    }
}
