//! HBONE mTLS handshakes between the configs of this crate: the behaviour DESIGN.md 4.1 requires,
//! checked on real rustls connections (in memory and over loopback TCP) by the alert or error the
//! other side receives.

// Test helpers outside #[test] functions panic on setup failures by design.
#![allow(clippy::unwrap_used)]

mod alerts;
mod resumption;
mod success;
mod support;
mod tcp;
