//! The harness's smoke tests in one test binary (one link, less disk); each file is a module.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

mod direct;
mod ztunnel;
