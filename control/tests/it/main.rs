//! control's integration tests in one test binary (one link, less disk); each file is a module.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

mod ca_cluster;
mod class_status;
mod deploy;
mod fake_api;
mod grpc;
mod kube_source;
mod l7_status;
mod scale;
