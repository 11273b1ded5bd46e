//! Command line of `mesh-testapp` (also embedded as `mesh-benches testapp ...`).
//!
//! ```text
//! mesh-testapp serve --port P [--bind IP] [--banner]
//! mesh-testapp send --to IP:PORT --data STRING [--timeout-ms N]
//! mesh-testapp bulk --to IP:PORT --bytes N [--timeout-ms N]
//! mesh-testapp connrate --to IP:PORT [--duration-ms N] [--concurrency C] [--timeout-ms N]
//! ```
//! `serve` prints `listening on <addr>` once bound. `send` prints what came back and exits 0, or
//! prints the reason on stderr and exits with [`super::SendError::exit_code`]. `bulk` prints
//! `echoed N bytes intact in MS ms` and exits 0, or the reason and exits 1. `connrate` prints
//! one JSON line (see [`super::ConnRateReport::to_json`]).

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::{
    BulkOptions, ConnRateOptions, Route, SendOptions, ServeOptions, Server, banner_name, bulk,
    connrate, relay, send, splice_relay,
};

/// The prefix of the line `serve` prints when it is ready.
pub const READY_LINE: &str = "listening on";

#[derive(Debug, Parser)]
#[command(
    name = "mesh-testapp",
    about = "TCP test application of the mesh testbed"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// TCP echo server.
    Serve {
        /// Port to listen on.
        #[arg(long)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
        bind: IpAddr,
        /// Send `hello from <POD_NAME or hostname>` first on every connection.
        #[arg(long)]
        banner: bool,
    },
    /// Connect, send, half-close, print the reply.
    Send {
        /// Server address.
        #[arg(long)]
        to: SocketAddr,
        /// Data to send.
        #[arg(long)]
        data: String,
        /// Deadline of the whole exchange.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Stream a byte pattern to an echo server and check every byte that comes back.
    Bulk {
        /// Server address.
        #[arg(long)]
        to: SocketAddr,
        /// Bytes to stream.
        #[arg(long)]
        bytes: u64,
        /// Deadline of the whole exchange.
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
    /// Measure new connections per second against an echo server.
    Connrate {
        /// Server address.
        #[arg(long)]
        to: SocketAddr,
        /// How long to run.
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
        /// Parallel client loops.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Deadline of one connection.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Plain TCP relay (no TLS): every `--route LISTEN=TO` accepts on LISTEN and copies to TO.
    Relay {
        /// `LISTEN=TO` address pairs.
        #[arg(long = "route", required = true)]
        routes: Vec<Route>,
        /// Runtime worker threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Move bytes with splice(2) (no user-space copy; a thread per direction) instead.
        #[arg(long)]
        splice: bool,
    },
}

/// Parses `args` (including the program name) and runs the chosen command.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Cmd::Serve { port, bind, banner } => {
            let opts = ServeOptions {
                bind,
                port,
                banner: banner.then(banner_name),
            };
            let server = match Server::bind(&opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot listen on {bind}:{port}: {e}");
                    return ExitCode::from(1);
                }
            };
            match server.local_addr() {
                Ok(addr) => println!("{READY_LINE} {addr}"),
                Err(_) => println!("{READY_LINE} {bind}:{port}"),
            }
            let _ = std::io::stdout().flush();
            match server.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("server failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Send {
            to,
            data,
            timeout_ms,
        } => {
            let opts = SendOptions {
                to,
                data: data.into_bytes(),
                timeout: Duration::from_millis(timeout_ms),
            };
            match send(&opts) {
                Ok(reply) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&reply);
                    let _ = out.flush();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mesh-testapp send: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Cmd::Bulk {
            to,
            bytes,
            timeout_ms,
        } => {
            let opts = BulkOptions {
                to,
                bytes,
                timeout: Duration::from_millis(timeout_ms),
            };
            match bulk(&opts) {
                Ok(took) => {
                    println!("echoed {bytes} bytes intact in {} ms", took.as_millis());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mesh-testapp bulk: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Connrate {
            to,
            duration_ms,
            concurrency,
            timeout_ms,
        } => {
            let report = connrate(&ConnRateOptions {
                to,
                duration: Duration::from_millis(duration_ms),
                concurrency,
                timeout: Duration::from_millis(timeout_ms),
            });
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Cmd::Relay {
            routes,
            workers,
            splice,
        } => {
            let ready = |addrs: &[SocketAddr]| {
                for a in addrs {
                    println!("{READY_LINE} {a}");
                }
                let _ = std::io::stdout().flush();
            };
            let run = if splice {
                splice_relay(&routes, ready)
            } else {
                relay(&routes, workers, ready)
            };
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mesh-testapp relay: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
