//! The local source: a cluster-state file (YAML or JSON) that the local runtime rewrites
//! atomically (temp file + rename) whenever pods or namespaces change:
//!
//! ```yaml
//! namespaces:
//!   - {name: default, labels: {istio.io/dataplane-mode: ambient}}
//! pods:
//!   - {uid: u1, name: web-1, namespace: default, serviceAccount: web, nodeName: node-1,
//!      labels: {app: web}, hostNetwork: false}
//! ```
//!
//! The agent polls it (cheap `stat`, reparsed only when it changed) and turns the differences
//! into events; pods of other nodes are ignored. A file that is missing or invalid is logged and
//! the previous state kept, so a bad write never unenrols anything. Annotations are written to a
//! status file, `{"redirection": {"<uid>": "enabled"}}`, that the local runtime can read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{EventSink, PodSource, SourceError};
use crate::agent::model::{NamespaceMeta, PodMeta, REDIRECTION_ENABLED, SourceEvent};

/// How often the state file is checked: well under the 1 s enrolment target, and a `stat`
/// every 100 ms costs nothing.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// The cluster-state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalState {
    /// Namespaces with their labels.
    pub namespaces: Vec<NamespaceMeta>,
    /// Pods of every node (each agent keeps its own).
    pub pods: Vec<PodMeta>,
}

impl LocalState {
    /// Writes the state atomically to `path` (what the local runtime and tests do).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// The status file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalStatus {
    /// `ambient.istio.io/redirection` of enrolled pods, by uid.
    pub redirection: BTreeMap<String, String>,
}

/// Pod events from a state file; see the module documentation.
#[derive(Debug)]
pub struct LocalSource {
    state_file: PathBuf,
    status_file: PathBuf,
    node: String,
    poll: Duration,
    status: Mutex<LocalStatus>,
    stop: Arc<AtomicBool>,
}

impl LocalSource {
    /// Watches `state_file` for pods of `node`; writes annotations to `status_file`.
    pub fn new(state_file: PathBuf, status_file: PathBuf, node: String, poll: Duration) -> Self {
        Self {
            state_file,
            status_file,
            node,
            poll,
            status: Mutex::default(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for LocalSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl PodSource for LocalSource {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, sink: EventSink) -> Result<(), SourceError> {
        let watcher = Watcher {
            path: self.state_file.clone(),
            node: self.node.clone(),
            poll: self.poll,
            stop: self.stop.clone(),
        };
        std::thread::Builder::new()
            .name("local-source".into())
            .spawn(move || watcher.run(&sink))
            .map(|_| ())
            .map_err(|e| SourceError::Start {
                source_name: "local",
                detail: e.to_string(),
            })
    }

    fn set_redirection(&self, pod: &PodMeta, enabled: bool) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if enabled {
            status
                .redirection
                .insert(pod.uid.clone(), REDIRECTION_ENABLED.into());
        } else {
            status.redirection.remove(&pod.uid);
        }
        let result = serde_json::to_vec_pretty(&*status)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let tmp = self.status_file.with_extension("tmp");
                std::fs::write(&tmp, json)?;
                std::fs::rename(&tmp, &self.status_file)
            });
        if let Err(err) = result {
            tracing::warn!(%err, path = %self.status_file.display(), "cannot write the redirection status file");
        }
    }
}

struct Watcher {
    path: PathBuf,
    node: String,
    poll: Duration,
    stop: Arc<AtomicBool>,
}

/// What identifies a version of the file without reading it.
type Stamp = (SystemTime, u64, u64);

impl Watcher {
    fn run(&self, sink: &EventSink) {
        let mut seen: Option<Stamp> = None;
        let mut pods: HashMap<String, PodMeta> = HashMap::new();
        let mut namespaces: HashMap<String, NamespaceMeta> = HashMap::new();
        let mut synced = false;
        while !self.stop.load(Ordering::SeqCst) {
            if let Some(stamp) = stamp(&self.path)
                && seen != Some(stamp)
            {
                match read(&self.path) {
                    Ok(state) => {
                        seen = Some(stamp);
                        let events = diff(&self.node, state, &mut pods, &mut namespaces);
                        for event in events {
                            if !sink.send(event) {
                                return;
                            }
                        }
                        if !synced {
                            synced = true;
                            if !sink.send(SourceEvent::Synced) {
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        seen = Some(stamp);
                        tracing::warn!(path = %self.path.display(), %err, "cluster state file not loaded; keeping the previous state");
                    }
                }
            }
            std::thread::sleep(self.poll);
        }
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

fn read(path: &Path) -> Result<LocalState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
}

/// The events that turn (`pods`, `namespaces`) into `state` (for `node`), updating both.
pub fn diff(
    node: &str,
    state: LocalState,
    pods: &mut HashMap<String, PodMeta>,
    namespaces: &mut HashMap<String, NamespaceMeta>,
) -> Vec<SourceEvent> {
    let mut events = Vec::new();
    let new_ns: HashMap<String, NamespaceMeta> = state
        .namespaces
        .into_iter()
        .map(|n| (n.name.clone(), n))
        .collect();
    let new_pods: HashMap<String, PodMeta> = state
        .pods
        .into_iter()
        .filter(|p| p.node_name == node && !p.uid.is_empty())
        .map(|p| (p.uid.clone(), p))
        .collect();
    for (name, ns) in &new_ns {
        if namespaces.get(name) != Some(ns) {
            events.push(SourceEvent::Namespace(ns.clone()));
        }
    }
    for (uid, pod) in &new_pods {
        if pods.get(uid) != Some(pod) {
            events.push(SourceEvent::Pod(pod.clone()));
        }
    }
    events.extend(
        pods.keys()
            .filter(|uid| !new_pods.contains_key(*uid))
            .map(|uid| SourceEvent::PodDeleted(uid.clone())),
    );
    events.extend(
        namespaces
            .keys()
            .filter(|name| !new_ns.contains_key(*name))
            .map(|name| SourceEvent::NamespaceDeleted(name.clone())),
    );
    *pods = new_pods;
    *namespaces = new_ns;
    events
}

#[cfg(test)]
mod tests;
