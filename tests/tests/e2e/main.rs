//! All network-namespace end-to-end tests in one test binary: one link instead of one per file keeps the
//! build small (disk and link time); each file stays a module named as before, so `e2e ztunnel_l4::` selects one.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used)]

mod cni_capture;
mod cni_lifecycle;
mod control_stream;
mod echo;
mod meshctl_crash;
mod meshctl_examples;
mod meshctl_explain_local;
mod meshctl_l7_status;
mod meshctl_local;
mod meshctl_pods;
mod meshctl_services;
mod meshctl_waypoint;
mod meshctl_ztunnel_config;
mod testbed;
mod waypoint_conformance;
mod waypoint_control;
mod waypoint_istio;
mod waypoint_protocols;
mod waypoint_resilience;
mod waypoint_routing;
mod waypoint_security;
mod ztunnel_handoff;
mod ztunnel_l4;
mod ztunnel_waypoint;
