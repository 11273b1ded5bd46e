//! `ztunnel`: parses the configuration and runs the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    ztunnel::alloc::tune();
    let config = ztunnel::config::Config::parse();
    // The control side (handoff, control stream, admin) runs here; connections run on the
    // data-path workers that `app::run` starts (see `ztunnel::workers`).
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(ztunnel::app::run(config)));
    // Log records are written in batches; the last ones must not be lost at exit.
    ztunnel::telemetry::flush();
    result
}
