//! `mesh-benches http echo|load`: the HTTP side of the benchmark, run inside the pods by the
//! harness (the binary starts itself, as it does for `testapp`).
//!
//! - `echo --port P`: the mesh's HTTP echo application (`meshctl echo`'s library), answering any
//!   request with its JSON description.
//! - `load --to ADDR --rate R --seconds S --body B --connections C`: a fixed-rate (open loop)
//!   HTTP/1.1 client; prints one JSON line with per-request latency percentiles (see [`load`]).

pub mod load;
mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// First argument that makes the binary act as the HTTP echo server or load client.
pub const HTTP_SUBCOMMAND: &str = "http";

#[derive(Debug, Parser)]
#[command(
    name = "mesh-benches http",
    about = "HTTP echo server and fixed-rate load client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the HTTP/1.1 + h2c echo application.
    Echo {
        /// Port to listen on (all addresses).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Sends requests at a fixed rate and prints the latency percentiles as JSON.
    Load(load::LoadOptions),
}

/// Runs `mesh-benches http ...` with `args` (the first one is the subcommand name itself).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Echo { port } => echo(port),
        Command::Load(opts) => load::run(&opts).map(|report| println!("{}", report.to_json())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-benches http: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Worker threads of the echo server: one, like `mesh-echo`, so it takes the same share of the
/// two cores in every variant.
const ECHO_WORKERS: usize = 1;

fn echo(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let opts = mesh_testbed::echo::EchoOptions {
        delay: Duration::ZERO,
        ..mesh_testbed::echo::EchoOptions::from_env()
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ECHO_WORKERS)
        .enable_all()
        .build()?
        .block_on(mesh_testbed::echo::run(addr, opts))?;
    Ok(())
}
