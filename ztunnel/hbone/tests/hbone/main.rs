//! Loopback integration tests of the HBONE crate with real TLS (mesh CA certificates).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod drain;
mod offload;
mod pool;
mod records;
mod server_errors;
mod support;
mod tunnel;
