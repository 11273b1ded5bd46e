//! The waypoint: the mesh's optional L7 proxy (DESIGN.md 1, 3 flow 3).
//!
//! ztunnel sends traffic for a waypoint-bound service to the waypoint's 15008 as HBONE with
//! `:authority` = the original destination. The waypoint terminates the tunnel ([`server`]),
//! detects HTTP/1.1, HTTP/2 (gRPC) or opaque TCP, applies Gateway API routing (HTTPRoute,
//! GRPCRoute: matching, filters, weights, timeouts, retries, fault injection; the model lives in
//! `mesh_api::l7`) in [`proxy`], then sends each request on to an endpoint over HBONE with its own
//! identity ([`upstream`]). Config comes from local files ([`state`]), re-read on change.

pub mod access_log;
pub mod app;
pub mod authn;
pub mod config;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod server;
pub mod state;
pub mod upstream;
