//! Capture side of the mesh (DESIGN.md 4.3, 4.4): the library the `mesh-cni` CNI plugin and the
//! `mesh-cni-agent` node agent are built on.
//!
//! - [`netns`]: open network namespaces as descriptors and run code inside them on a dedicated
//!   thread.
//! - [`rules`]: the redirect rules inside an enrolled pod's netns (nftables, or iptables as a
//!   fallback), the policy route, drift checks, and the node-side probe SNAT ([`rules::host`]).
//! - [`handoff_server`]: the agent side of the handoff protocol that gives each enrolled pod's
//!   netns to ztunnel.
//!
//! Everything here is blocking `std` code (threads, no async runtime): the CNI plugin is a
//! short-lived process and the agent's work is a handful of commands per pod.

pub mod exec;
pub mod handoff_server;
pub mod netns;
pub mod rules;
