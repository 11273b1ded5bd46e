//! Writes the status of the L7 objects control sends to waypoints, after every index change: HTTPRoute/GRPCRoute
//! ([`super::routes`]) and VirtualService, DestinationRule, RequestAuthentication, HTTPFault ([`super::istio`]);
//! and of the GatewayClasses control is the controller of ([`super::status::gateway_class_status`]).
//! Only statuses whose content changed (timestamps aside) are written. Where they go ([`Target`]):
//!
//! - Kubernetes: a server-side apply of the `status` subresource (field manager `mesh-control`), plus a Warning
//!   Event when an object becomes invalid (or its reason changes);
//! - a directory (local mode, `--status-dir`): `<dir>/<Kind>/<namespace>/<name>.json` holds the status apply
//!   body, replaced atomically; files of objects gone are removed, the directory is emptied at start. `meshctl
//!   local get` shows them on the objects.
//!
//! Failures are logged and retried at the next change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::istio::{invalid_reason, l7_status, warning_event};
use super::routes::route_status;
use super::status::gateway_class_status;
use crate::objects::{Generic, Kind, Object};
use crate::store::Store;
use crate::translate::l7::{self, Invalid};
use crate::translate::ns_name;

/// The kinds whose status this writes.
pub const KINDS: [Kind; 7] = [
    Kind::GatewayClass,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::RequestAuthentication,
    Kind::HttpFault,
];

/// Where statuses go.
#[derive(Clone)]
pub enum Target {
    /// The API server: status subresource and Events.
    Kube(kube::Client),
    /// A directory of status files (local mode).
    Dir(PathBuf),
}

/// Why a status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The API server refused or could not be reached.
    #[error("cannot write the status through the API server: {0}")]
    Kube(#[from] kube::Error),
    /// A status file could not be written or removed.
    #[error("cannot write status file {0}: {1}")]
    File(PathBuf, std::io::Error),
}

/// How long a pass waits after an update for more: every update may change a status (a Service appearing, a
/// waypoint), so passes are batched rather than run per pod change.
pub const COALESCE: Duration = Duration::from_millis(100);

type Key = (Kind, String, String);

/// One object's status: its key, the apply body, and the Warning Event to record when invalid.
struct Report {
    key: Key,
    body: Value,
    event: Option<Value>,
}

/// Runs until `stop`.
pub async fn run(store: Arc<Store>, target: Target, stop: CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = store.wait_synced() => {}
    }
    if let Target::Dir(dir) = &target
        && let Err(e) = reset_dir(dir)
    {
        tracing::warn!(error = %e, "cannot prepare the status directory");
    }
    let mut seq = store.subscribe_updates();
    let mut written: HashMap<Key, Value> = HashMap::new();
    let mut warned: HashMap<Key, Value> = HashMap::new();
    let mut checked = Checked::default();
    loop {
        seq.borrow_and_update();
        let reports = reports(&store, &mut checked);
        let live: std::collections::HashSet<&Key> = reports.iter().map(|r| &r.key).collect();
        let gone: Vec<Key> = written
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for key in gone {
            checked.0.remove(&key);
            written.remove(&key);
            warned.remove(&key);
            if let Target::Dir(dir) = &target
                && let Err(e) = remove_file(dir, &key)
            {
                tracing::warn!(error = %e, "cannot remove a status file");
            }
        }
        for r in reports {
            let stable = without_times(&r.body);
            if written.get(&r.key) != Some(&stable) {
                match write(&target, &r.key, &r.body).await {
                    Ok(()) => {
                        written.insert(r.key.clone(), stable);
                    }
                    Err(e) => {
                        let (kind, ns, name) = &r.key;
                        tracing::warn!(object = %format!("{kind} {ns}/{name}"), error = %e, "cannot write status");
                    }
                }
            }
            match (&target, r.event) {
                (Target::Kube(client), Some(ev)) => {
                    let stable = without_times(&ev);
                    if warned.get(&r.key) != Some(&stable) {
                        record_event(client, &ev).await;
                        warned.insert(r.key, stable);
                    }
                }
                (_, None) => {
                    warned.remove(&r.key);
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = seq.changed() => if r.is_err() { return },
        }
        // Coalesce a burst of updates (pod churn) into one pass.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(COALESCE) => {}
        }
    }
}

/// Validation results by object, reused while its spec is unchanged: validating compiles regexes, and passes
/// run after every update (pod churn included).
#[derive(Default)]
struct Checked(HashMap<Key, (Value, Option<Invalid>)>);

impl Checked {
    /// Why the waypoint would reject `obj` (of `key`), if it would.
    fn invalid(&mut self, key: &Key, obj: &Generic) -> Option<Invalid> {
        if let Some((spec, invalid)) = self.0.get(key)
            && *spec == obj.spec
        {
            return invalid.clone();
        }
        let invalid = l7::check(key.0, obj).err();
        self.0
            .insert(key.clone(), (obj.spec.clone(), invalid.clone()));
        invalid
    }
}

/// The status of every object of [`KINDS`] now.
fn reports(store: &Store, checked: &mut Checked) -> Vec<Report> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let index = store.lock();
    KINDS
        .into_iter()
        .flat_map(|k| index.objects_of(k).collect::<Vec<_>>())
        .filter_map(|o| match o {
            Object::Generic(kind, obj) => Some((*kind, obj)),
            _ => None,
        })
        .filter_map(|(kind, obj)| {
            let (ns, name) = ns_name(&obj.metadata);
            let key = (kind, ns.to_string(), name.to_string());
            if kind == Kind::GatewayClass {
                let key = (kind, String::new(), name.to_string());
                let body = gateway_class_status(obj, &now)?;
                return Some(Report {
                    key,
                    body,
                    event: None,
                });
            }
            let invalid = checked.invalid(&key, obj);
            let body = match kind {
                Kind::HttpRoute | Kind::GrpcRoute => {
                    route_status(kind, obj, invalid.as_ref(), &index, &now)
                }
                _ => l7_status(kind, obj, invalid.as_ref(), &index, &now),
            };
            let event = invalid_reason(&body).map(|m| warning_event(kind, obj, &m, &now));
            Some(Report { key, body, event })
        })
        .collect()
}

async fn write(target: &Target, key: &Key, body: &Value) -> Result<(), ReportError> {
    let (kind, ns, name) = key;
    match target {
        Target::Kube(client) => {
            let (group, version) = kind
                .api_version()
                .rsplit_once('/')
                .unwrap_or(("", kind.api_version()));
            let lower = kind.to_string().to_lowercase();
            let plural = if lower.ends_with('s') {
                format!("{lower}es")
            } else {
                format!("{lower}s")
            };
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, &kind.to_string()),
                &plural,
            );
            let api: Api<DynamicObject> = if kind.namespaced() {
                Api::namespaced_with(client.clone(), ns, &ar)
            } else {
                Api::all_with(client.clone(), &ar)
            };
            super::apply::apply_status(&api, name, body).await?;
            Ok(())
        }
        Target::Dir(dir) => {
            let path = status_path(dir, key);
            let tmp = path.with_extension("json.tmp");
            let text = serde_json::to_vec_pretty(body).unwrap_or_default();
            let io = |e| ReportError::File(path.clone(), e);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&tmp, text).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)
        }
    }
}

/// Records a Warning Event; one already recorded (same name) is left as it is.
async fn record_event(client: &kube::Client, ev: &Value) {
    let ns = ev["metadata"]["namespace"].as_str().unwrap_or("default");
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Event"), "events");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let obj: DynamicObject = match serde_json::from_value(ev.clone()) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build a Warning Event");
            return;
        }
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, "cannot record a Warning Event"),
    }
}

/// `<dir>/<Kind>/<namespace>/<name>.json`: where local mode's status of `key` is.
pub fn status_path(dir: &Path, key: &(Kind, String, String)) -> PathBuf {
    let (kind, ns, name) = key;
    dir.join(kind.to_string())
        .join(ns)
        .join(format!("{name}.json"))
}

fn remove_file(dir: &Path, key: &Key) -> Result<(), ReportError> {
    let path = status_path(dir, key);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ReportError::File(path, e)),
        _ => Ok(()),
    }
}

/// Empties `dir` (statuses of a previous run) and creates it.
fn reset_dir(dir: &Path) -> Result<(), ReportError> {
    let io = |e| ReportError::File(dir.to_path_buf(), e);
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    std::fs::create_dir_all(dir).map_err(io)
}

/// `body` without timestamps (`lastTransitionTime`, an Event's `firstTimestamp`/`lastTimestamp`), to compare
/// across passes.
pub fn without_times(body: &Value) -> Value {
    match body {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "lastTransitionTime" | "firstTimestamp" | "lastTimestamp"
                    )
                })
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_do_not_count_as_changes() {
        let a = serde_json::json!({"status": {"parents": [{"conditions": [{"type": "Accepted",
            "lastTransitionTime": "t1"}]}], "conditions": [{"lastTransitionTime": "t1", "message": "m"}]}});
        let mut b = a.clone();
        b["status"]["parents"][0]["conditions"][0]["lastTransitionTime"] = "t2".into();
        b["status"]["conditions"][0]["lastTransitionTime"] = "t2".into();
        assert_eq!(without_times(&a), without_times(&b));
        b["status"]["conditions"][0]["message"] = "other".into();
        assert_ne!(without_times(&a), without_times(&b));
    }

    #[test]
    fn status_files_are_named_by_kind_namespace_and_name() {
        let p = status_path(
            Path::new("/s"),
            &(Kind::HttpRoute, "shop".into(), "r.v1".into()),
        );
        assert_eq!(p, Path::new("/s/HTTPRoute/shop/r.v1.json"));
    }

    #[test]
    fn validation_is_redone_only_when_the_spec_changes() {
        let route = |regex: &str| -> Generic {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "r", "namespace": "shop"},
                "spec": {"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": regex}}]}]},
            }))
            .unwrap()
        };
        let key = (Kind::HttpRoute, "shop".to_string(), "r".to_string());
        let mut checked = Checked::default();
        assert!(checked.invalid(&key, &route("/a(")).is_some());
        // A planted entry stands for the same spec (proves it is reused, not recomputed)...
        checked.0.get_mut(&key).unwrap().1 = None;
        assert!(checked.invalid(&key, &route("/a(")).is_none());
        // ...and a changed spec is checked again.
        assert!(checked.invalid(&key, &route("/b(")).is_some());
        assert!(checked.invalid(&key, &route("/b")).is_none());
    }
}
