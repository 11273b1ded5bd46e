//! Capture side of the mesh (DESIGN.md 4.3, 4.4): the `mesh-cni` CNI plugin, the
//! `mesh-cni-agent` node agent, and the pieces they are built on.
//!
//! - [`plugin`]: the CNI executable's logic (spec 1.0.0 / 0.4.0, ADD/DEL/CHECK/STATUS/VERSION).
//! - [`protocol`]: the plugin <-> agent messages over a unix socket.
//! - [`agent`]: the node agent: pod source (Kubernetes or local file), enrolment decision,
//!   reconciler, self-check, metrics, CNI installer.
//! - [`netns`]: open network namespaces as descriptors and run code inside them on a dedicated
//!   thread.
//! - [`rules`]: the redirect rules inside an enrolled pod's netns (nftables, or iptables as a
//!   fallback), the policy route, drift checks, and the node-side probe SNAT ([`rules::host`]).
//! - [`handoff_server`]: the agent side of the handoff protocol that gives each enrolled pod's
//!   netns to ztunnel.
//!
//! Capture work is blocking `std` code on threads; tokio only runs the Kubernetes watchers and
//! the metrics endpoint.

pub mod agent;
pub mod exec;
pub mod handoff_server;
pub mod netns;
pub mod plugin;
pub mod protocol;
pub mod rules;
