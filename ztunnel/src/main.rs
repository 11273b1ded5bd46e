//! `ztunnel`: parses the configuration and runs the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    ztunnel::alloc::tune();
    let config = ztunnel::config::Config::parse();
    // The control side (handoff, control stream, admin) runs here; connections run on the
    // data-path workers that `app::run` starts (see `ztunnel::workers`).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ztunnel::app::run(config))
}
