//! The CNI plugin's integration tests in one test binary (one link, less disk); each file is a module.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

mod agent_cli;
mod handoff;
mod host_snat;
mod rules_netns;
mod topo;
