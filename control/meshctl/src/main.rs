//! `meshctl`: parses the command line and hands it to the library (see `meshctl::cli`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    match meshctl::cli::run(meshctl::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error chain only: operators need the message, not a backtrace.
            eprintln!("meshctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
