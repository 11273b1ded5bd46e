//! Shared, validated domain types of the mesh.
//!
//! - [`model`]: the proxy config model (workloads, services, policies) that control streams to the
//!   ztunnels, indexed in an immutable [`ConfigSnapshot`].
//! - [`file`]: the local YAML config file ztunnel reads with `--config FILE`.
//! - [`authz`]: Istio `AuthorizationPolicy` parsing and L4 evaluation as ztunnel enforces it.
//! - [`peer_auth`]: Istio `PeerAuthentication` (STRICT / PERMISSIVE mTLS).
//! - [`l7`]: Gateway API HTTPRoute/GRPCRoute for the waypoint: validation, precedence, matching,
//!   filters, weighted backends, fault injection (pure logic).
//! - [`handoff`]: the node agent -> ztunnel protocol (DESIGN.md 4.3) over a `SOCK_SEQPACKET` socket.
//!
//! This crate is pure logic plus blocking std/nix socket code: it must not depend on tokio, kube,
//! tonic or rustls, so every part of the mesh can use it.

pub mod authz;
pub mod file;
pub mod handoff;
pub mod identity;
pub mod l7;
pub mod model;
pub mod peer_auth;

pub use authz::{ConnAttrs, Decision, DenyReason, Policy};
pub use identity::{PeerIdentity, SpiffeIdLike};
pub use model::{
    ConfigSnapshot, FieldError, MtlsMode, Protocol, Service, ServicePort, SnapshotError,
    SnapshotParts, WaypointRef, Workload,
};
