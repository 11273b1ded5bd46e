//! In-pod mode: the node agent hands each enrolled pod's network namespace to ztunnel (DESIGN.md 4.3), and
//! ztunnel opens that pod's listeners inside it.

pub mod client;
pub mod pods;
pub mod reaper;
