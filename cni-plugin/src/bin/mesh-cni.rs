//! `mesh-cni`: the chained CNI plugin. All logic is in `mesh_cni::plugin`; this reads the
//! environment and stdin, prints the result or the CNI error JSON, and exits.

use std::io::{Read, Write};

/// Largest network config accepted on stdin (real ones are a few KiB).
const MAX_STDIN: u64 = 1 << 20;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESH_CNI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut stdin = Vec::new();
    let read = std::io::stdin().take(MAX_STDIN).read_to_end(&mut stdin);
    let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match read {
        Ok(_) => mesh_cni::plugin::run(|k| std::env::var(k).ok(), &stdin),
        Err(e) => mesh_cni::plugin::Output {
            stdout: mesh_cni::plugin::CniError::new(
                mesh_cni::plugin::ErrorCode::IoFailure,
                "cannot read stdin",
                e.to_string(),
            )
            .to_json(mesh_cni::plugin::config::FALLBACK_VERSION),
            exit_code: 1,
        },
    }))
    .unwrap_or_else(|_| mesh_cni::plugin::Output {
        stdout: mesh_cni::plugin::CniError::new(
            mesh_cni::plugin::ErrorCode::IoFailure,
            "internal error in mesh-cni",
            "the plugin hit a bug; see its stderr",
        )
        .to_json(mesh_cni::plugin::config::FALLBACK_VERSION),
        exit_code: 1,
    });
    let mut out = std::io::stdout().lock();
    // Nothing useful can be done if stdout is gone; the exit code still tells the runtime.
    let _ = out.write_all(output.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(output.exit_code);
}
