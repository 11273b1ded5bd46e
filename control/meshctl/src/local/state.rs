//! The state file of a local cluster (`<state>/state.json`): everything `up` created, written
//! before each thing is created so that `down` can remove it even after a crash of `up` itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the state file inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// Errors of reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error(
        "state file {path}: {source} (check that the state directory is writable, we run as root)"
    )]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error(
        "state file {path} is not valid JSON of meshctl local ({source}); remove it by hand after checking `ip netns list`"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
}

/// A background process started by `up`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Component name (`control`, `ztunnel-node-1`, `agent-node-2`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// The executable, to tell it apart from a later process that reused the pid.
    pub exe: PathBuf,
    /// The network namespace it runs in.
    pub netns: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// Everything a local cluster consists of.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterState {
    /// Short id of this cluster, part of every namespace name (`meshctl-<id>-...`).
    pub id: String,
    /// Number of nodes.
    pub nodes: u8,
    /// `true` once `up` finished and everything was ready.
    pub ready: bool,
    /// `PATH` in force when `up` ran (pods run with it).
    pub path_env: String,
    /// Network namespaces created, in creation order.
    pub netns: Vec<String>,
    /// Background processes started.
    pub processes: Vec<ProcessRecord>,
}

impl ClusterState {
    /// The state file inside `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads the state of `dir`; `None` when there is no state file.
    pub fn load(dir: &Path) -> Result<Option<Self>, StateError> {
        let path = Self::file(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source })
    }

    /// Writes the state into `dir` atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = Self::file(dir);
        let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ClusterState::load(dir.path()).unwrap(), None);
        let s = ClusterState {
            id: "abcd1234".into(),
            nodes: 2,
            netns: vec!["meshctl-abcd1234-fabric".into()],
            processes: vec![ProcessRecord {
                name: "control".into(),
                pid: 42,
                exe: "/bin/true".into(),
                netns: "meshctl-abcd1234-node-1".into(),
                log: dir.path().join("logs/control.log"),
            }],
            ..ClusterState::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(ClusterState::load(dir.path()).unwrap(), Some(s));
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(ClusterState::file(dir.path()), "{not json").unwrap();
        let e = ClusterState::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(STATE_FILE), "{e}");
    }
}
