//! `meshctl`: parses the command line and hands it to the library (see `meshctl::cli`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    meshctl::cli::run(meshctl::cli::Cli::parse())
}
