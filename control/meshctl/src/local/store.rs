//! The object store of a local cluster: `<state>/store/objects.json` (every applied object,
//! Kubernetes-shaped, with the status the runtime writes back), changed only under an exclusive
//! `flock` on `<state>/store/lock` and written atomically (temporary file + rename).
//!
//! Every change is projected at once to where the consumers read objects:
//! - control's file source, `<state>/control/config/`: one file per object of a kind control
//!   reads (everything but Deployment), rewritten only when it changed;
//! - the node agents' cluster-state file, `<state>/cluster.yaml` (`mesh_cni::agent::LocalState`):
//!   every Namespace with its labels and every scheduled pod, so that enrolment
//!   (`istio.io/dataplane-mode`) follows label changes live.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use mesh_cni::agent::{LocalState, NamespaceMeta, PodMeta};
use serde_json::Value;

use super::objects::{Key, for_control};
use super::up::CLUSTER_FILE;

/// Directory of the store inside the state directory.
pub const STORE_DIR: &str = "store";
/// control's file-source directory inside the state directory.
pub const CONTROL_CONFIG_DIR: &str = "control/config";
/// Annotation control reads to enrol a pod (written by the node agent, copied by the runtime).
pub const ANNOTATION_REDIRECTION: &str = "ambient.istio.io/redirection";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("object store: cannot {what} {}: {source}", path.display())]
    Io {
        /// What we tried.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The store file is corrupt.
    #[error("object store {}: not valid JSON ({source}); the cluster's objects are lost, run `meshctl local down` and `up` again", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
    /// A change was refused (nothing of it was stored).
    #[error("{0}")]
    Refused(String),
}

/// Every object of the cluster by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects(pub BTreeMap<Key, Value>);

impl Objects {
    /// Objects of `kind` (in `namespace` when given), in key order.
    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.kind == kind && namespace.is_none_or(|n| n == k.namespace))
            .map(|(_, v)| v)
    }

    /// The object `key`.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.0.get(key)
    }

    /// The object `key`, mutable.
    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Value> {
        self.0.get_mut(key)
    }

    /// Inserts or replaces `obj` under its own key.
    pub fn put(&mut self, obj: Value) {
        self.0.insert(Key::of(&obj), obj);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        self.0.remove(key)
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// The store file of state dir `dir`.
pub fn store_file(dir: &Path) -> PathBuf {
    dir.join(STORE_DIR).join("objects.json")
}

/// Reads the objects (no lock needed: the file is only ever replaced whole).
pub fn load(dir: &Path) -> Result<Objects, StoreError> {
    let path = store_file(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Objects::default()),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let list: Value =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    Ok(Objects(
        items.into_iter().map(|o| (Key::of(&o), o)).collect(),
    ))
}

/// Runs `change` on the objects under the store lock; when they changed, saves them and
/// projects them (see the module documentation). An error from `change` leaves everything as
/// it was.
pub fn update<R>(
    dir: &Path,
    change: impl FnOnce(&mut Objects) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let store_dir = dir.join(STORE_DIR);
    std::fs::create_dir_all(&store_dir).map_err(io("create", &store_dir))?;
    let lock_path = store_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock", &lock_path)(e.into()))?;
    let before = load(dir)?;
    let mut objects = before.clone();
    let result = change(&mut objects)?;
    if objects != before {
        save(dir, &objects)?;
        project(dir, &objects)?;
    }
    Ok(result)
}

fn save(dir: &Path, objects: &Objects) -> Result<(), StoreError> {
    let items: Vec<&Value> = objects.0.values().collect();
    let text = serde_json::to_vec_pretty(
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    .map_err(|e| io("render", &store_file(dir))(std::io::Error::other(e)))?;
    write_atomic(&store_file(dir), &text)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))
}

/// Writes the projections of `objects` (control's directory and the agents' cluster file).
pub fn project(dir: &Path, objects: &Objects) -> Result<(), StoreError> {
    let config = dir.join(CONTROL_CONFIG_DIR);
    std::fs::create_dir_all(&config).map_err(io("create", &config))?;
    let mut wanted = BTreeSet::new();
    for (key, obj) in objects.0.iter().filter(|(k, _)| for_control(&k.kind)) {
        let file = config.join(control_file_name(key));
        let text = serde_json::to_vec_pretty(obj)
            .map_err(|e| io("render", &file)(std::io::Error::other(e)))?;
        if std::fs::read(&file).ok().as_deref() != Some(&text[..]) {
            write_atomic(&file, &text)?;
        }
        wanted.insert(file);
    }
    for entry in std::fs::read_dir(&config).map_err(io("list", &config))? {
        let path = entry.map_err(io("list", &config))?.path();
        let ours = path.extension().is_some_and(|e| e == "json");
        if ours && !wanted.contains(&path) {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    let cluster = dir.join(CLUSTER_FILE);
    let state = cluster_state(objects);
    let current = std::fs::read_to_string(&cluster)
        .ok()
        .and_then(|t| serde_yaml_ng::from_str::<LocalState>(&t).ok());
    if current.as_ref() != Some(&state) {
        state.write(&cluster).map_err(io("write", &cluster))?;
    }
    Ok(())
}

/// File name of `key` in control's directory: `<kind>.<namespace>.<name>.json`.
fn control_file_name(key: &Key) -> String {
    let ns = if key.namespace.is_empty() {
        "_"
    } else {
        &key.namespace
    };
    format!("{}.{ns}.{}.json", key.kind.to_ascii_lowercase(), key.name)
}

/// The agents' view: namespaces with labels, scheduled pods.
pub fn cluster_state(objects: &Objects) -> LocalState {
    let map = |v: Option<&Value>| -> BTreeMap<String, String> {
        v.and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default()
    };
    let s = |o: &Value, p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let namespaces = objects
        .of_kind("Namespace", None)
        .map(|n| NamespaceMeta {
            name: s(n, "/metadata/name"),
            labels: map(n.pointer("/metadata/labels")),
        })
        .collect();
    let pods = objects
        .of_kind("Pod", None)
        .filter(|p| !s(p, "/spec/nodeName").is_empty())
        .map(|p| PodMeta {
            uid: s(p, "/metadata/uid"),
            name: s(p, "/metadata/name"),
            namespace: s(p, "/metadata/namespace"),
            service_account: s(p, "/spec/serviceAccountName"),
            node_name: s(p, "/spec/nodeName"),
            host_network: p
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            labels: map(p.pointer("/metadata/labels")),
            annotations: map(p.pointer("/metadata/annotations")),
            ips: s(p, "/status/podIP").parse().into_iter().collect(),
            terminated: matches!(s(p, "/status/phase").as_str(), "Succeeded" | "Failed"),
        })
        .collect();
    LocalState { namespaces, pods }
}

/// A random id in the shape of a Kubernetes UID (from `/dev/urandom`).
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_are_saved_and_projected_and_failed_ones_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient"}}});
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "shop", "uid": "u1"},
            "spec": {"nodeName": "node-2", "containers": [{"name": "c", "command": ["true"]}]}, "status": {"podIP": "10.2.0.5"}});
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"}});
        update(dir.path(), |o| {
            o.put(ns.clone());
            o.put(pod.clone());
            o.put(dep.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().0.len(), 3);
        let config = dir.path().join(CONTROL_CONFIG_DIR);
        assert!(config.join("pod.shop.a.json").is_file());
        assert!(config.join("namespace._.shop.json").is_file());
        assert!(
            !config.join("deployment.shop.d.json").exists(),
            "control does not read Deployments"
        );
        let cluster: LocalState = serde_yaml_ng::from_str(
            &std::fs::read_to_string(dir.path().join(CLUSTER_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cluster.namespaces[0].labels["istio.io/dataplane-mode"],
            "ambient"
        );
        assert_eq!(cluster.pods[0].node_name, "node-2");
        assert_eq!(
            cluster.pods[0].ips,
            vec!["10.2.0.5".parse::<std::net::IpAddr>().unwrap()]
        );

        let e = update(dir.path(), |o| {
            o.remove(&Key::of(&pod));
            Err::<(), _>(StoreError::Refused("no".into()))
        });
        assert!(e.is_err());
        assert_eq!(
            load(dir.path()).unwrap().0.len(),
            3,
            "a refused change stores nothing"
        );

        update(dir.path(), |o| {
            o.remove(&Key::of(&pod));
            Ok(())
        })
        .unwrap();
        assert!(!config.join("pod.shop.a.json").exists());
    }

    #[test]
    fn uids_are_unique() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
    }
}
