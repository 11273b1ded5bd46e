//! `mesh-testapp`: the TCP test application of the testbed; see `mesh_testbed::testapp::cli`.

fn main() -> std::process::ExitCode {
    mesh_testbed::testapp::cli::main_from(std::env::args_os())
}
