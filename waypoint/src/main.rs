//! `waypoint`: parses the configuration and runs the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = waypoint::config::Config::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().thread_name("waypoint-worker");
    if config.workers > 0 {
        rt.worker_threads(config.workers);
    }
    rt.build()?.block_on(waypoint::app::run(config))
}
