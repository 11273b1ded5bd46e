//! `waypoint`: parses the configuration and runs the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = waypoint::config::Config::parse();
    // The control side (config, certificates, admin, metrics); requests are served by the
    // data-path workers (`ztunnel::workers`), each on its own single-threaded runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("waypoint-main")
        .build()?
        .block_on(waypoint::app::run(config))
}
