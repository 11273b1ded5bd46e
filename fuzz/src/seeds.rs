//! Generated seeds: inputs that reach each target's success path, built with the same code the
//! mesh uses (a real HTTP/2 client, a signed token, a workload's CSR, encoded config). The corpus
//! test runs them; `examples/seeds.rs` writes them into `corpus/` for cargo-fuzz.

/// A local config in the `control/api/README.md` format (workloads, services, a waypoint, ALLOW
/// and DENY policies): the fixture of `meshctl explain`'s tests.
pub const CONFIG_EXAMPLE: &str = include_str!("../../control/meshctl/tests/fixtures/explain.yaml");

/// `(target, seed)` pairs.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = vec![
        ("hbone_wire", crate::hbone_seed()),
        ("jwt_token", crate::jwt_seed()),
        ("ca_csr", crate::csr_seed()),
    ];
    seeds.extend(
        crate::xds_seeds(CONFIG_EXAMPLE)
            .into_iter()
            .map(|s| ("xds_resource", s)),
    );
    seeds
}
