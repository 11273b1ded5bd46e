//! The proxy's view of the mesh: the last good config snapshot, swapped atomically on updates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use mesh_api::ConfigSnapshot;
use tokio_util::sync::CancellationToken;

use crate::config::CONFIG_POLL;

/// Errors loading the config file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file was read but is not a valid config; nothing of it was applied.
    #[error("config file {0} rejected, previous config kept: {1}")]
    Invalid(PathBuf, String),
}

/// Shared, lock-free readable config. Readers take a cheap snapshot per connection.
#[derive(Debug)]
pub struct State {
    current: ArcSwap<ConfigSnapshot>,
    version: std::sync::atomic::AtomicU64,
}

impl State {
    /// A state holding `snapshot` as version 1.
    pub fn new(snapshot: ConfigSnapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
            version: 1.into(),
        }
    }

    /// The config in force now.
    pub fn snapshot(&self) -> Arc<ConfigSnapshot> {
        self.current.load_full()
    }

    /// Replaces the config in force; returns the new version.
    pub fn replace(&self, snapshot: ConfigSnapshot) -> u64 {
        self.current.store(Arc::new(snapshot));
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Version of the config in force (1 = first load).
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Reads and validates a config file (all or nothing).
pub fn load_file(path: &Path) -> Result<ConfigSnapshot, StateError> {
    let text = std::fs::read_to_string(path).map_err(|e| StateError::Read(path.into(), e))?;
    mesh_api::file::parse(&text).map_err(|e| StateError::Invalid(path.into(), e.to_string()))
}

/// Polls `path` for changes and swaps valid new versions in; invalid ones are logged and ignored.
pub async fn watch_file(path: PathBuf, state: Arc<State>, stop: CancellationToken) {
    let mut last = modified(&path);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CONFIG_POLL) => {}
        }
        let now = modified(&path);
        if now == last {
            continue;
        }
        last = now;
        match load_file(&path) {
            Ok(snapshot) => {
                let version = state.replace(snapshot);
                tracing::info!(path = %path.display(), version, "config updated");
            }
            Err(e) => tracing::error!(error = %e, "config update rejected"),
        }
    }
}

/// The config-stream sink of ztunnel: each complete config received from control is validated and swapped in;
/// one that is not a valid snapshot is rejected (NACK) and the previous one stays in force. `first` turns true
/// at the first config applied.
pub struct ControlSink {
    state: Arc<State>,
    first: tokio::sync::watch::Sender<bool>,
}

impl ControlSink {
    /// A sink updating `state`.
    pub fn new(state: Arc<State>, first: tokio::sync::watch::Sender<bool>) -> Self {
        Self { state, first }
    }
}

impl mesh_xds::client::ConfigSink for ControlSink {
    fn current(&self) -> mesh_xds::client::Received {
        mesh_xds::client::Received {
            parts: self.state.snapshot().parts().clone(),
            l7_objects: Default::default(),
        }
    }

    fn apply(&self, config: mesh_xds::client::Received) -> Result<(), String> {
        let snapshot = ConfigSnapshot::new(config.parts).map_err(|e| e.to_string())?;
        let version = self.state.replace(snapshot);
        tracing::info!(version, "config from control applied");
        self.first.send_replace(true);
        Ok(())
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
