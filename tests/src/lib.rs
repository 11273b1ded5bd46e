//! The mesh's end-to-end test bed (DESIGN.md section 9, tier 3).
//!
//! Real network namespaces stand in for Kubernetes nodes and pods: [`Topology`] builds nodes
//! joined by a fabric and [`Topology::add_pod`] wires pods to them; [`Netns`] and [`Process`]
//! run commands inside; [`Capture`] shows what crossed the wire; [`bin_path`] finds the
//! workspace's binaries; [`local::LocalCluster`] drives `meshctl local` clusters; [`testapp`]
//! is the TCP application (`mesh-testapp`) the tests talk to.
//!
//! Everything is an RAII guard: namespaces, processes and captures are removed on drop, also
//! during a panic, and the root namespace only ever sees namespace names under `/run/netns`.

pub mod bins;
pub mod capture;
pub mod cmd;
pub mod cni;
pub mod echo;
pub mod l7;
pub mod local;
pub mod mesh;
pub mod names;
pub mod netns;
pub mod process;
pub mod testapp;
pub mod topology;

pub use bins::{bin_path, find_bin};
pub use capture::{Capture, CaptureSummary};
pub use netns::Netns;
pub use process::Process;
pub use topology::{Node, Pod, Topology};
