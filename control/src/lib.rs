//! `mesh-control`: the mesh's controller (DESIGN.md 1, 4.2, 4.5, 5).
//!
//! - [`objects`]: the Kubernetes objects control reads, parsed once into typed values.
//! - [`translate`]: pure translation of objects into the proxy config model of `mesh-api`.
//! - [`index`]: every object and its translation, updated incrementally, with a change log.
//! - [`xds`]: the config stream; [`ca`]: the mesh CA; [`auth`]: caller tokens; [`serve`]: the TLS endpoint.
//! - [`deployer`]: waypoint Deployments/Services for `istio-waypoint` Gateways, and their status.
//! - [`source`]: where objects come from (a watched directory of YAML files); [`store`]: the live index.

pub mod app;
pub mod auth;
pub mod ca;
pub mod config;
pub mod deployer;
pub mod index;
pub mod objects;
pub mod serve;
pub mod source;
pub mod store;
pub mod translate;
pub mod xds;
