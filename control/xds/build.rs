//! Generates the gRPC client and server of `control/proto/mesh_control.proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/mesh_control.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["../proto"])?;
    Ok(())
}
