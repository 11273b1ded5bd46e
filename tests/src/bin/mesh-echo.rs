//! `mesh-echo`: the HTTP/1.1 + h2c + gRPC echo application of the end-to-end tests; see
//! `mesh_testbed::echo`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use mesh_testbed::echo::{EchoOptions, run};

#[derive(Debug, Parser)]
#[command(
    name = "mesh-echo",
    about = "HTTP/1.1, h2c and gRPC echo server of the mesh tests"
)]
struct Cli {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Version reported in the answers.
    #[arg(long, default_value = "")]
    version: String,
    /// HTTP status of every answer.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Milliseconds to wait before answering.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = EchoOptions {
        version: cli.version,
        status: cli.status,
        delay: Duration::from_millis(cli.delay_ms),
        ..EchoOptions::from_env()
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cli.port);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(addr, opts))?;
    Ok(())
}
