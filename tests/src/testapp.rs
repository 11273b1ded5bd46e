//! The test application behind the `mesh-testapp` binary: a TCP echo server (optionally with a
//! banner line naming the pod), a one-shot client, a bulk client that checks every echoed byte, a connection-rate client and a plain TCP relay. The binary is a
//! thin wrapper around [`cli::main_from`], so other binaries (the benchmark harness) can embed it.

mod bulk;
pub mod cli;
mod connrate;
mod relay;
mod send;
mod serve;
mod splice;

pub use bulk::{BulkError, BulkOptions, bulk, pattern};
pub use connrate::{ConnRateOptions, ConnRateReport, connrate};
pub use relay::{Route, relay};
pub use send::{SendError, SendOptions, send};
pub use serve::{ServeOptions, Server, banner_name};
pub use splice::splice_relay;

#[cfg(test)]
mod tests;
