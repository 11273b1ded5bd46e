//! `mesh-control`: parses the command line and runs the library.

use clap::Parser;
use mesh_control::config::Command;

fn main() -> anyhow::Result<()> {
    match Command::parse() {
        Command::Serve(config) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(mesh_control::app::serve(
                *config,
                tokio_util::sync::CancellationToken::new(),
                None,
            ))
        }
        Command::Token(config) => {
            println!("{}", mesh_control::app::token(&config)?);
            Ok(())
        }
    }
}
