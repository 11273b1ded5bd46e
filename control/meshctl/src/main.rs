//! `meshctl`: parses the command line and hands it to the library (see `meshctl::cli`).

use clap::Parser;
use meshctl::cli::{Cli, Command, LocalCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if prints_for_a_reader(&cli.command) {
        restore_sigpipe();
    }
    match meshctl::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error chain only: operators need the message, not a backtrace.
            eprintln!("meshctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Commands that print a result and end, where a reader that goes away (`meshctl local get pods |
/// head`) should end meshctl quietly as it ends any Unix filter, instead of a panic on the failed
/// write. The servers (`echo`, the local runtime and DNS) keep Rust's default, SIGPIPE ignored.
fn prints_for_a_reader(command: &Command) -> bool {
    !matches!(
        command,
        Command::Echo(_) | Command::Local(LocalCommand::Runtime { .. } | LocalCommand::Dns { .. })
    )
}

fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is a plain disposition.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("meshctl: cannot restore SIGPIPE's default action: {e}");
    }
}
