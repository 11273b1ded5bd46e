//! ztunnel: the per-node L4 proxy of the mesh.
//!
//! It captures every TCP connection of the enrolled pods on its node (handed over by the node agent, see
//! [`inpod`]), carries it over HBONE mTLS with the pod's own identity ([`proxy`]), enforces L4 authorization at
//! the destination and exports Istio's metrics ([`metrics`]) and an admin API ([`admin`]).

pub mod admin;
pub mod alloc;
pub mod app;
pub mod config;
pub mod control;
pub mod identity;
pub mod inpod;
pub mod metrics;
pub mod proxy;
pub mod socket;
pub mod state;
pub mod telemetry;
pub mod workers;
