//! SPIFFE workload identities, certificates and the rustls configurations of HBONE mutual TLS.
//!
//! - [`SpiffeId`], the identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//! - [`TrustBundle`]: the mesh root(s); [`WorkloadCert`]: leaf + chain + key of one identity.
//! - [`CertificateAuthority`]: signs workload certificates (testing mode in ztunnel, control's CA);
//!   [`new_csr`] makes the matching requests.
//! - [`tls`]: the crypto provider (aws-lc-rs, or BoringSSL with the `fips` feature), server and
//!   client configs, and the verifiers that check chain and identity (DESIGN.md 4.1).

mod bundle;
mod ca;
mod cert;
mod encoding;
mod error;
mod keys;
mod spiffe;
pub mod tls;
mod x509;

pub use bundle::TrustBundle;
pub use ca::{CertificateAuthority, new_csr};
pub use cert::WorkloadCert;
pub use error::Error;
pub use spiffe::{DEFAULT_TRUST_DOMAIN, SpiffeId};
