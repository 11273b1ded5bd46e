//! Pods the agent saw through CNI ADD, persisted under the state directory so a restarted agent
//! finds their network namespaces again (DESIGN.md: startup reconcile).
//!
//! One JSON file per pod, `<state>/pods/<uid>.json`, written atomically (temp file + rename).

use std::io;
use std::path::{Path, PathBuf};

use crate::protocol::CniPod;

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The directory or a file could not be written.
    #[error("cannot write pod record {path}: {source} (is the agent's state directory writable?)")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The directory could not be read.
    #[error("cannot read pod records in {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The on-disk set of known pod sandboxes.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    /// A store in `<state_dir>/pods` (created if needed).
    pub fn open(state_dir: &Path) -> Result<Self, RecordsError> {
        let dir = state_dir.join("pods");
        std::fs::create_dir_all(&dir).map_err(|source| RecordsError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_name(uid)))
    }

    /// Saves (or replaces) the record of `pod` (keyed by its uid, which must be set).
    pub fn save(&self, pod: &CniPod) -> Result<(), RecordsError> {
        let path = self.path(&pod.uid);
        let tmp = path.with_extension("tmp");
        let write = |p: &Path, source| RecordsError::Write {
            path: p.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(pod)
            .map_err(|e| write(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        std::fs::write(&tmp, json).map_err(|e| write(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| write(&path, e))
    }

    /// Forgets pod `uid` (no error if unknown).
    pub fn remove(&self, uid: &str) -> Result<(), RecordsError> {
        let path = self.path(uid);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordsError::Write { path, source }),
        }
    }

    /// Every readable record; unreadable files are logged and skipped.
    pub fn load_all(&self) -> Result<Vec<CniPod>, RecordsError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| RecordsError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut pods = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<CniPod>(&b).map_err(|e| e.to_string()))
            {
                Ok(pod) if !pod.uid.is_empty() => pods.push(pod),
                Ok(_) => tracing::warn!(path = %path.display(), "pod record without uid ignored"),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "unreadable pod record ignored")
                }
            }
        }
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok(pods)
    }
}

/// A file name for `uid`: safe characters kept, everything else as `%XX`.
fn file_name(uid: &str) -> String {
    let mut out = String::new();
    for b in uid.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> CniPod {
        CniPod {
            uid: uid.into(),
            name: "n".into(),
            namespace: "ns".into(),
            container_id: "c".into(),
            netns: "/var/run/netns/x".into(),
            ifname: "eth0".into(),
            ips: vec!["10.0.0.1".parse().expect("ip")],
        }
    }

    #[test]
    fn records_survive_a_reload_and_odd_uids_are_safe_file_names() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = RecordStore::open(dir.path()).expect("open");
        store.save(&pod("default/../x")).expect("save");
        store.save(&pod("abc-123")).expect("save");
        std::fs::write(dir.path().join("pods/garbage.json"), "{").expect("garbage");
        let again = RecordStore::open(dir.path()).expect("reopen");
        let uids: Vec<String> = again
            .load_all()
            .expect("load")
            .into_iter()
            .map(|p| p.uid)
            .collect();
        assert_eq!(
            uids,
            vec!["abc-123".to_string(), "default/../x".to_string()]
        );
        assert!(dir.path().join("pods/default%2F%2E%2E%2Fx.json").is_file());
        again.remove("default/../x").expect("remove");
        again.remove("never-there").expect("remove unknown");
        assert_eq!(again.load_all().expect("load").len(), 1);
    }
}
