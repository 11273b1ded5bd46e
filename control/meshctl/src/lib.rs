//! `meshctl`: the mesh's user command line. [`local`] runs the whole mesh on one Linux machine
//! (DESIGN.md 7) from the real binaries (`mesh-control`, `ztunnel`, `mesh-cni-agent`); [`echo`]
//! is the test application `meshctl echo`.

pub mod cli;
pub mod echo;
pub mod local;
// Cluster commands (kube-rs, and local mode where it makes sense).
pub mod explain;
pub mod waypoint;
pub mod ztunnel_cmd;
