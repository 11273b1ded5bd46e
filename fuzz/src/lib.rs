//! Fuzz targets for the parsers that face untrusted input. Each target takes arbitrary bytes,
//! drives one parser and what acts on its output, and panics only on a bug: a panic in the mesh's
//! code, or a broken invariant the target asserts (translation that depends on the order objects
//! arrive in, a signed certificate for an identity nobody asked for, a token accepted without a
//! valid signature).
//!
//! Two drivers run them: `tests/corpus.rs` over the checked-in corpus (`corpus/<target>/`) in
//! every test run, and cargo-fuzz (`libfuzzer/`), coverage-guided, by hand; see `README.md`.

mod cni;
mod control;
mod hbone;
mod identity;
mod jwt;
pub mod seeds;
mod xds;

pub use cni::cni_netconf;
pub use control::{control_objects, control_resources};
pub use hbone::{hbone_connects, hbone_seed, hbone_wire};
pub use identity::{ca_csr, ca_signs, csr_seed};
pub use jwt::{jwt_principal, jwt_seed, jwt_token};
pub use xds::{xds_decodes, xds_resource, xds_seeds};

/// A fuzz target: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name: the names of `corpus/<target>/` and `libfuzzer/fuzz_targets/<target>.rs`.
pub const TARGETS: &[(&str, Target)] = &[
    ("ca_csr", ca_csr),
    ("cni_netconf", cni_netconf),
    ("control_objects", control_objects),
    ("hbone_wire", hbone_wire),
    ("jwt_token", jwt_token),
    ("xds_resource", xds_resource),
];

/// A single-threaded runtime, so the same input always runs the same way.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime needs only memory")
}
