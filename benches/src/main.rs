//! `mesh-benches`: see the crate's README. `mesh-benches testapp ...` runs the embedded test
//! application (the harness starts itself that way inside the pods).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == mesh_benches::TESTAPP_SUBCOMMAND)
    {
        return mesh_testbed::testapp::cli::main_from(args.into_iter().skip(1));
    }
    if args
        .get(1)
        .is_some_and(|a| a == mesh_benches::http::HTTP_SUBCOMMAND)
    {
        return mesh_benches::http::main_from(args.into_iter().skip(1));
    }
    let opts = mesh_benches::Options::parse();
    match mesh_benches::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-benches: {e:#}");
            ExitCode::FAILURE
        }
    }
}
