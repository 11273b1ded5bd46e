//! Generates the Rust types of `proto/handoff.proto` with prost-build.

use std::path::PathBuf;

/// Where Debian installs protoc; used when `PROTOC` is not set.
const DEBIAN_PROTOC: &str = "/usr/bin/protoc";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/handoff.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_PROTOC));
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
