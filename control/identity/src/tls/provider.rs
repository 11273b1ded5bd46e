//! The rustls crypto provider: aws-lc-rs by default, BoringSSL with the `fips` feature.
//!
//! Both are restricted to what HBONE uses (DESIGN.md 4.1): TLS 1.3 with AES-128-GCM and AES-256-GCM.
//! With `fips`, key exchange is further limited to P-256/P-384 and signatures to RSA and ECDSA
//! P-256/P-384 (the SP 800-52r2 set). If both features are enabled, `fips` wins.
//!
//! Note: `fips` selects BoringSSL as the provider, built from source without its FIPS module
//! (`boring/fips` needs a Go toolchain to build the module); `CryptoProvider::fips()` therefore
//! reports `false`.

use std::sync::{Arc, OnceLock};

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "fips")))]
compile_error!(
    "mesh-identity needs a crypto provider: enable the `aws-lc-rs` (default) or the `fips` feature"
);

/// The TLS 1.3 suites HBONE allows, in order of preference (AES-128 is the faster of the two).
const SUITES: [CipherSuite; 2] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
];

static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();

/// The process-wide provider every config and certificate operation of this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    PROVIDER
        .get_or_init(|| Arc::new(restrict_suites(base())))
        .clone()
}

/// Name of the crypto backend in use ("aws-lc-rs" or "boringssl"), for logs and config dumps.
pub fn provider_name() -> &'static str {
    if cfg!(feature = "fips") {
        "boringssl"
    } else {
        "aws-lc-rs"
    }
}

#[cfg(feature = "fips")]
fn base() -> CryptoProvider {
    use rustls::NamedGroup;
    let mut p = boring_rustls_provider::provider();
    p.kx_groups
        .retain(|g| matches!(g.name(), NamedGroup::secp256r1 | NamedGroup::secp384r1));
    p.signature_verification_algorithms = boring_rustls_provider::verify::ALL_FIPS_ALGORITHMS;
    p
}

#[cfg(all(feature = "aws-lc-rs", not(feature = "fips")))]
fn base() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

fn restrict_suites(mut p: CryptoProvider) -> CryptoProvider {
    p.cipher_suites.retain(|s| SUITES.contains(&s.suite()));
    p.cipher_suites
        .sort_by_key(|s| SUITES.iter().position(|x| *x == s.suite()));
    p
}
