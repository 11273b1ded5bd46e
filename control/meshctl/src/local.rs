//! Local mode (DESIGN.md 7): the whole mesh on one Linux machine. `up` creates N node network
//! namespaces joined by a fabric ([`network`]), starts `mesh-control` (file source in the state
//! directory), and one `ztunnel` and one `mesh-cni-agent` per node ([`components`]), recording
//! everything in the state file ([`state`]) before creating it; `down` removes it all, from the
//! state file and by sweeping the cluster's namespace name prefix.

pub mod apply;
pub mod cni;
pub mod components;
pub mod controllers;
pub mod dns;
mod down;
pub mod inspect;
pub mod kubeproxy;
pub mod network;
pub mod objects;
pub mod probe;
pub mod routes;
pub mod runtime;
pub mod sandbox;
pub mod services;
pub mod state;
pub mod store;
pub mod sys;
mod up;
pub mod view;
pub mod waypoints;

use std::path::{Path, PathBuf};

pub use down::{DownReport, down};
pub use up::{UpReport, up};

/// Most nodes a local cluster can have (node numbers are IPv4 octets).
pub const MAX_NODES: u8 = 250;

/// Errors of local mode.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A dependency or permission is missing, or a command failed.
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// A read-only verb failed.
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    /// The state file could not be used.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Manifests could not be read or are invalid (nothing was applied).
    #[error(transparent)]
    Objects(#[from] objects::ObjectsError),
    /// The object store refused or failed a change (nothing was applied).
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// `up` on a state directory that already holds a cluster.
    #[error(
        "a local cluster is already up in state directory {0} (its state file exists); run `meshctl local down --state {0}` first, or use another --state"
    )]
    AlreadyUp(PathBuf),
    /// Bad node count.
    #[error("--nodes must be between 1 and {MAX_NODES}, got {0}")]
    NodeCount(u8),
    /// A file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What we tried.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A component did not become ready.
    #[error("{component} did not become ready ({what}){}; its log {}:\n{tail}",
        exited.as_ref().map(|s| format!(", it exited with {s}")).unwrap_or_default(), log.display())]
    NotReady {
        /// The component.
        component: String,
        /// What we waited for.
        what: String,
        /// Its exit status if it exited.
        exited: Option<String>,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// `down` could not remove everything.
    #[error(
        "left behind after down: {0}; remove by hand with `ip netns del`/`kill` and rerun down"
    )]
    Leftovers(String),
}

/// Options of `meshctl local up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// State directory.
    pub state: PathBuf,
    /// Number of nodes.
    pub nodes: u8,
}

/// Options of `meshctl local down`.
#[derive(Debug, Clone)]
pub struct DownOptions {
    /// State directory given to `up`.
    pub state: PathBuf,
}

/// The cluster id of state directory `dir`: 8 hex digits of the FNV-1a hash of its absolute
/// path, so that clusters of different state directories never share namespace names.
pub fn cluster_id(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut h: u32 = 0x811c_9dc5;
    for b in abs.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_stable_and_differ_between_state_dirs() {
        let a = cluster_id(Path::new("/run/meshctl-local"));
        assert_eq!(a, cluster_id(Path::new("/run/meshctl-local")));
        assert_ne!(a, cluster_id(Path::new("/run/meshctl-other")));
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn the_already_up_error_says_how_to_go_on() {
        let e = LocalError::AlreadyUp(PathBuf::from("/run/x")).to_string();
        assert!(
            e.contains("already up") && e.contains("meshctl local down --state /run/x"),
            "{e}"
        );
    }
}
