//! `meshctl local apply|delete -f` and `label` (DESIGN.md 7): the whole input is read and
//! validated before the store is touched, and every change of one command is one store update,
//! so an invalid document or an unknown kind leaves the store exactly as it was.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::objects::{self, Key, cluster_scoped, kind_named};
use super::store::{self, Objects, StoreError};
use super::{LocalError, inspect};

/// Annotation naming the Deployment that owns a pod (with an owner reference as well).
pub const OWNER_DEPLOYMENT: &str = "meshctl.local/deployment";
/// How long `delete` waits for the runtime to remove the pods it stops.
pub const DELETE_WAIT: Duration = Duration::from_secs(60);

/// Fields the cluster fills in that a re-apply keeps when the new manifest leaves them out
/// (uid, scheduling, the Service's address).
const KEPT: [&str; 4] = [
    "/metadata/uid",
    "/spec/nodeName",
    "/spec/clusterIP",
    "/spec/clusterIPs",
];

/// `apply -f path`: creates or updates every object; returns one line per object
/// (`pod/shop/a created|configured|unchanged`).
pub fn apply(dir: &Path, path: &Path) -> Result<Vec<String>, LocalError> {
    inspect::cluster(dir)?;
    let input = objects::read_path(path)?;
    let lines = store::update(dir, |objects| {
        let mut lines = Vec::new();
        for obj in input {
            let key = Key::of(&obj);
            let (mut obj, verb) = merge(objects.get(&key), obj, &key)?;
            admit(&mut obj, objects)?;
            lines.push(format!("{} {verb}", show(&key)));
            objects.put(obj);
        }
        Ok(lines)
    })?;
    Ok(lines)
}

/// The stored form of `new` given the `old` object of the same key, and what happened.
fn merge(
    old: Option<&Value>,
    mut new: Value,
    key: &Key,
) -> Result<(Value, &'static str), StoreError> {
    let Some(old) = old else {
        new["metadata"]["uid"] = Value::from(store::new_uid());
        new["metadata"]["generation"] = Value::from(1);
        return Ok((new, "created"));
    };
    for p in KEPT {
        if new.pointer(p).is_none()
            && let Some(v) = old.pointer(p)
        {
            set(&mut new, p, v.clone());
        }
    }
    // As the API server: the generation counts spec changes (status conditions' observedGeneration refers to it).
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    new["metadata"]["generation"] = Value::from(if old.get("spec") == new.get("spec") {
        generation
    } else {
        generation + 1
    });
    if key.kind == "Pod" {
        if old.get("spec") != new.get("spec") {
            return Err(StoreError::Refused(format!(
                "{}: a pod's spec cannot change (as in Kubernetes); delete the pod first or use a Deployment",
                show(key)
            )));
        }
        // The runtime's view of the pod (status, enrolment annotation) stays.
        if let Some(s) = old.get("status") {
            new["status"] = s.clone();
        }
        if let Some(v) = old.pointer(&format!(
            "/metadata/annotations/{}",
            store::ANNOTATION_REDIRECTION.replace('/', "~1")
        )) {
            new["metadata"]["annotations"][store::ANNOTATION_REDIRECTION] = v.clone();
        }
    } else if let Some(s) = old.get("status") {
        new["status"] = s.clone();
    }
    if old.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(StoreError::Refused(format!(
            "{} is being deleted; apply again once it is gone",
            show(key)
        )));
    }
    Ok((
        new.clone(),
        if &new == old {
            "unchanged"
        } else {
            "configured"
        },
    ))
}

fn set(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*part] = v;
            return;
        }
        cur = &mut cur[*part];
    }
}

/// Admission: checks of an object against the rest of the cluster before it is stored.
/// Service ClusterIP allocation (helper B's `services.rs`) plugs in here.
fn admit(obj: &mut Value, objects: &Objects) -> Result<(), StoreError> {
    let key = Key::of(obj);
    super::services::admit(obj, objects).map_err(StoreError::Refused)?;
    if !key.namespace.is_empty() && key.namespace != "default" && key.kind != "Namespace" {
        let ns = Key {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: key.namespace.clone(),
        };
        if objects.get(&ns).is_none() {
            return Err(StoreError::Refused(format!(
                "{}: namespace {:?} does not exist; apply the Namespace first (or in the same input, before it)",
                show(&key),
                key.namespace
            )));
        }
    }
    Ok(())
}

/// `kind/namespace/name` as `apply` prints it.
pub fn show(key: &Key) -> String {
    let kind = key.kind.to_ascii_lowercase();
    if key.namespace.is_empty() {
        format!("{kind}/{}", key.name)
    } else {
        format!("{kind}/{}/{}", key.namespace, key.name)
    }
}

/// `delete -f path`: removes every object (pods are marked for the runtime, which stops them,
/// runs CNI DEL and removes them; a Namespace takes its objects along); waits until the
/// marked pods are gone.
pub fn delete(dir: &Path, path: &Path) -> Result<Vec<String>, LocalError> {
    inspect::cluster(dir)?;
    let input = objects::read_path(path)?;
    let now = timestamp();
    let (lines, pods) = store::update(dir, |objects| {
        let mut lines = Vec::new();
        let mut pods = Vec::new();
        // In reverse: objects before the namespace listed above them.
        for obj in input.iter().rev() {
            let key = Key::of(obj);
            if objects.get(&key).is_none() {
                lines.push(format!("{} not found", show(&key)));
                continue;
            }
            let mut doomed = vec![key.clone()];
            if key.kind == "Namespace" {
                doomed.extend(
                    objects
                        .0
                        .keys()
                        .filter(|k| k.namespace == key.name)
                        .cloned(),
                );
            }
            for k in doomed {
                if k.kind == "Pod" {
                    mark_deleted(objects, &k, &now);
                    pods.push(k);
                } else {
                    objects.remove(&k);
                }
            }
            lines.push(format!("{} deleted", show(&key)));
        }
        lines.reverse();
        Ok((lines, pods))
    })?;
    wait_gone(dir, &pods, DELETE_WAIT)?;
    Ok(lines)
}

/// Marks pod `key` for deletion (the runtime finishes it).
pub fn mark_deleted(objects: &mut Objects, key: &Key, now: &str) {
    if let Some(p) = objects.get_mut(key)
        && p.pointer("/metadata/deletionTimestamp").is_none()
    {
        p["metadata"]["deletionTimestamp"] = Value::from(now);
    }
}

/// Waits until none of `pods` is in the store any more.
pub fn wait_gone(dir: &Path, pods: &[Key], timeout: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        let objects = store::load(dir)?;
        let left: Vec<String> = pods
            .iter()
            .filter(|k| objects.get(k).is_some())
            .map(show)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StoreError::Refused(format!(
                "marked for deletion but still there after {}s: {} (is the runtime running? see `meshctl local logs runtime`)",
                timeout.as_secs(),
                left.join(", ")
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `label <kind> <name> [-n NS] key=value|key- ...`.
pub fn label(
    dir: &Path,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    changes: &[String],
) -> Result<String, LocalError> {
    inspect::cluster(dir)?;
    let kind = kind_named(kind).ok_or_else(|| {
        StoreError::Refused(format!(
            "unknown kind {kind:?} (examples: namespace, pod, service, deployment)"
        ))
    })?;
    let mut ops: Vec<(String, Option<String>)> = Vec::new();
    for c in changes {
        let op = if let Some(k) = c.strip_suffix('-') {
            (k.to_owned(), None)
        } else if let Some((k, v)) = c.split_once('=') {
            (k.to_owned(), Some(v.to_owned()))
        } else {
            return Err(StoreError::Refused(format!("{c:?} is neither key=value nor key-")).into());
        };
        if !label_key(&op.0) || op.1.as_deref().is_some_and(|v| !label_value(v)) {
            return Err(StoreError::Refused(format!("{c:?} is not a valid label")).into());
        }
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(StoreError::Refused("no label change given (key=value or key-)".into()).into());
    }
    let key = Key {
        kind: kind.into(),
        namespace: if cluster_scoped(kind) {
            String::new()
        } else {
            namespace.unwrap_or("default").into()
        },
        name: name.into(),
    };
    store::update(dir, |objects| {
        let obj = objects
            .get_mut(&key)
            .ok_or_else(|| StoreError::Refused(format!("{} not found", show(&key))))?;
        let labels = &mut obj["metadata"]["labels"];
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        for (k, v) in &ops {
            if let Some(m) = labels.as_object_mut() {
                match v {
                    Some(v) => {
                        m.insert(k.clone(), Value::from(v.as_str()));
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(format!("{} labeled", show(&key)))
}

fn label_key(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
    (prefix.is_empty() || objects::dns_name(prefix)) && label_value(name) && !name.is_empty()
}

fn label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Now as RFC 3339 (UTC, seconds).
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_454), (2026, 1, 1));
        let t = timestamp();
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn labels_are_checked() {
        assert!(label_key("istio.io/dataplane-mode") && label_key("app"));
        assert!(!label_key("Bad Key") && !label_key(""));
        assert!(label_value("ambient") && label_value("") && !label_value("a b"));
    }

    #[test]
    fn a_reapply_keeps_what_the_cluster_filled_in_and_pod_specs_are_immutable() {
        let new = serde_json::json!({"kind": "Pod", "metadata": {"name": "a", "namespace": "n"}, "spec": {"containers": []}});
        let key = Key::of(&new);
        let (created, verb) = merge(None, new.clone(), &key).unwrap();
        assert_eq!(verb, "created");
        let mut stored = created.clone();
        stored["spec"]["nodeName"] = "node-1".into();
        stored["status"] = serde_json::json!({"podIP": "10.1.0.2"});
        let (again, verb) = merge(Some(&stored), new.clone(), &key).unwrap();
        assert_eq!(verb, "unchanged");
        assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(again["status"]["podIP"], "10.1.0.2");
        let mut changed = new;
        changed["spec"]["containers"] = serde_json::json!([{"name": "x"}]);
        assert!(merge(Some(&stored), changed, &key).is_err());
    }

    #[test]
    fn the_generation_counts_spec_changes() {
        let v1 = serde_json::json!({"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "n"},
            "spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}]}]}});
        let key = Key::of(&v1);
        let (created, _) = merge(None, v1.clone(), &key).unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let (same, verb) = merge(Some(&created), v1.clone(), &key).unwrap();
        assert_eq!(
            (verb, &same["metadata"]["generation"]),
            ("unchanged", &1.into())
        );
        let mut v2 = v1.clone();
        v2["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/b".into();
        let (changed, verb) = merge(Some(&same), v2, &key).unwrap();
        assert_eq!(
            (verb, &changed["metadata"]["generation"]),
            ("configured", &2.into())
        );
        let mut relabelled = changed.clone();
        relabelled["metadata"]["labels"] = serde_json::json!({"a": "b"});
        let (kept, _) = merge(Some(&changed), relabelled, &key).unwrap();
        assert_eq!(
            kept["metadata"]["generation"], 2,
            "metadata changes keep it"
        );
    }
}
