//! `waypoint`: parses the configuration and runs the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = waypoint::config::Config::parse();
    // The control side (config, certificates, admin, metrics); requests are served by the
    // data-path workers (`ztunnel::workers`), each on its own single-threaded runtime.
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("waypoint-main")
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(waypoint::app::run(config)));
    // Log records are written in batches; the last ones must not be lost at exit.
    ztunnel::telemetry::flush();
    result
}
