//! What is being compared. A [`Variant`] prepares the data path (start proxies, enrol pods)
//! and says where the client should connect; the measures are the same for all variants.
//!
//! To add one (e.g. through ztunnel): implement [`Variant`] in a new module, keep the
//! processes it starts in its own fields (they are dropped after the measures, before the
//! namespaces), and add it to [`all_variants`]. The first variant is the baseline of the
//! ratios in the report.

mod relay;
mod waypoint;
mod ztunnel;

use std::net::SocketAddr;

pub use relay::Relay;
pub use waypoint::{WAYPOINT_BIN_ENV, Waypoint, locate_waypoint};
pub use ztunnel::{MIN_TUNNELLED, ZTUNNEL_BIN_ENV, Ztunnel, locate_binary};

use crate::env::BenchEnv;

/// One way of carrying the client's traffic to the server.
pub trait Variant {
    /// Short name: the column header and the `--variants` value.
    fn name(&self) -> &str;

    /// Called once the topology exists, before any server starts: start proxies, enrol the
    /// pods, wait until ready.
    fn setup(&mut self, env: &BenchEnv) -> anyhow::Result<()>;

    /// Called once the servers listen, before measuring (e.g. wait for endpoints to be known).
    fn ready(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        Ok(())
    }

    /// The address the client dials to reach server port `port` (a pod IP, a service VIP...).
    fn target(&self, env: &BenchEnv, port: u16) -> SocketAddr {
        SocketAddr::from((env.server.ip, port))
    }

    /// Processes whose CPU use is reported during the HTTP measure, as (label, pid).
    fn watched(&self) -> Vec<(String, u32)> {
        Vec::new()
    }

    /// Called right after the HTTP measure (the first one), e.g. to read proxy memory under
    /// that load alone.
    fn after_http(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        Ok(())
    }

    /// Extra numbers gathered after the measures (e.g. proxy memory), as (name, value, unit).
    fn extra(&mut self, _env: &BenchEnv) -> anyhow::Result<Vec<(String, f64, String)>> {
        Ok(Vec::new())
    }
}

/// Pod to pod with no proxy: the baseline.
#[derive(Debug, Default)]
pub struct Direct;

impl Variant for Direct {
    fn name(&self) -> &str {
        "direct"
    }

    fn setup(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Every known variant, baseline first.
pub fn all_variants() -> Vec<Box<dyn Variant>> {
    vec![
        Box::new(Direct),
        Box::new(Relay::default()),
        Box::new(Relay::splice()),
        Box::new(Ztunnel::default()),
        Box::new(Waypoint::default()),
    ]
}
