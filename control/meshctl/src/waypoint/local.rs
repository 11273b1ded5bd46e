//! `meshctl waypoint apply|list|delete --local [--state DIR]`: the same verbs on a local cluster
//! (`meshctl local up`), through its object store instead of the API server. The local runtime
//! then runs the waypoint (`crate::local::waypoints`), as control's deployer does in a cluster.

use std::path::{Path, PathBuf};

use clap::Args;
use kube::api::DynamicObject;
use serde_json::Value;

use super::gateway::{self, class_of};
use super::{
    USE_WAYPOINT_LABEL, WAYPOINT_CLASS, WaypointCommand, WaypointError, WaypointFor, WaypointInfo,
    gateway_manifest, render_table,
};
use crate::local::objects::Key;
use crate::local::store::{self, StoreError};

/// Selection of a local cluster.
#[derive(Debug, Clone, Default, Args)]
pub struct LocalArgs {
    /// Use the local cluster (`meshctl local up`) instead of the kubeconfig's.
    #[arg(long, conflicts_with = "context")]
    pub local: bool,
    /// State directory of the local cluster (implies --local).
    #[arg(long, conflicts_with = "context")]
    pub state: Option<PathBuf>,
}

impl LocalArgs {
    /// The state directory, when a local cluster is selected.
    pub fn dir(&self) -> Option<PathBuf> {
        match (&self.state, self.local) {
            (Some(d), _) => Some(d.clone()),
            (None, true) => Some(PathBuf::from(crate::cli::DEFAULT_STATE_DIR)),
            (None, false) => None,
        }
    }
}

/// Errors of the local path.
#[derive(Debug, thiserror::Error)]
pub enum LocalWaypointError {
    /// The check of the name, namespace or Gateway class.
    #[error(transparent)]
    Waypoint(#[from] WaypointError),
    /// No cluster in the state directory.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn ns_key(ns: &str) -> Key {
    Key {
        kind: "Namespace".into(),
        namespace: String::new(),
        name: ns.into(),
    }
}

fn gw_key(ns: &str, name: &str) -> Key {
    Key {
        kind: "Gateway".into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A stored check failed: carried out of the store's closure (nothing is written).
fn refuse(e: WaypointError) -> StoreError {
    StoreError::Refused(e.to_string())
}

/// Runs `cmd` on the local cluster in `dir`; returns what to print.
pub fn run(cmd: &WaypointCommand, dir: &Path) -> Result<String, LocalWaypointError> {
    crate::local::inspect::cluster(dir)?;
    let ns_of = |n: &Option<String>| n.clone().unwrap_or_else(|| "default".to_owned());
    match cmd {
        WaypointCommand::Apply(a) => apply(
            dir,
            &ns_of(&a.namespace),
            &a.name,
            a.for_,
            a.enroll_namespace,
        ),
        WaypointCommand::List(a) => {
            let scope = (!a.all_namespaces).then(|| ns_of(&a.namespace));
            let found = list(dir, scope.as_deref())?;
            Ok(match a.output.as_deref() {
                Some(_) => gateway::render_json(&found),
                None => render_table(&found, a.all_namespaces),
            })
        }
        WaypointCommand::Delete(a) => delete(dir, &ns_of(&a.namespace), &a.name),
    }
}

/// Writes waypoint Gateway `ns/name` (keeping its uid and status) and, with `enroll`, the
/// namespace label.
pub fn apply(
    dir: &Path,
    ns: &str,
    name: &str,
    for_: WaypointFor,
    enroll: bool,
) -> Result<String, LocalWaypointError> {
    gateway::validate_name(name)?;
    gateway::validate_name(ns)?;
    let out = store::update(dir, |o| {
        if o.get(&ns_key(ns)).is_none() {
            return Err(refuse(WaypointError::NoNamespace(ns.to_owned())));
        }
        let mut gw = gateway_manifest(ns, name, for_);
        let old = o.get(&gw_key(ns, name));
        if let Some(old) = old
            && class_of_value(old) != WAYPOINT_CLASS
        {
            return Err(refuse(WaypointError::NotAWaypoint {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                class: class_of_value(old).to_owned(),
            }));
        }
        gw["metadata"]["uid"] = old
            .and_then(|g| g.pointer("/metadata/uid").cloned())
            .unwrap_or_else(|| Value::from(store::new_uid()));
        if let Some(st) = old.and_then(|g| g.get("status")) {
            gw["status"] = st.clone();
        }
        o.put(gw);
        let mut out = format!("waypoint {ns}/{name} applied (for {for_})\n");
        if enroll && let Some(n) = o.get_mut(&ns_key(ns)) {
            n["metadata"]["labels"][USE_WAYPOINT_LABEL] = Value::from(name);
            out.push_str(&format!(
                "namespace {ns} labelled {USE_WAYPOINT_LABEL}={name}\n"
            ));
        }
        Ok(out)
    })?;
    Ok(out)
}

fn class_of_value(gw: &Value) -> &str {
    gw.pointer("/spec/gatewayClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The waypoints of `ns` (every namespace with `None`), sorted.
pub fn list(dir: &Path, ns: Option<&str>) -> Result<Vec<WaypointInfo>, LocalWaypointError> {
    let objects = store::load(dir)?;
    let mut found: Vec<WaypointInfo> = objects
        .of_kind("Gateway", ns)
        .filter_map(|g| serde_json::from_value::<DynamicObject>(g.clone()).ok())
        .filter(|g| class_of(g) == WAYPOINT_CLASS)
        .filter_map(|g| WaypointInfo::from_gateway(&g))
        .collect();
    found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(found)
}

/// Deletes waypoint `ns/name` and the namespace's label when it names it.
pub fn delete(dir: &Path, ns: &str, name: &str) -> Result<String, LocalWaypointError> {
    gateway::validate_name(name)?;
    gateway::validate_name(ns)?;
    let out = store::update(dir, |o| {
        let Some(gw) = o.get(&gw_key(ns, name)) else {
            return Err(refuse(WaypointError::NotFound(
                ns.to_owned(),
                name.to_owned(),
            )));
        };
        if class_of_value(gw) != WAYPOINT_CLASS {
            return Err(refuse(WaypointError::NotAWaypoint {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                class: class_of_value(gw).to_owned(),
            }));
        }
        o.remove(&gw_key(ns, name));
        let mut out = format!("waypoint {ns}/{name} deleted\n");
        if let Some(n) = o.get_mut(&ns_key(ns))
            && n.pointer(&format!(
                "/metadata/labels/{}",
                USE_WAYPOINT_LABEL.replace('/', "~1")
            )) == Some(&Value::from(name))
            && let Some(l) = n["metadata"]["labels"].as_object_mut()
        {
            l.remove(USE_WAYPOINT_LABEL);
            out.push_str(&format!(
                "namespace {ns}: label {USE_WAYPOINT_LABEL} removed\n"
            ));
        }
        Ok(out)
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_list_delete_on_the_store_and_bad_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = apply(d, "shop", "wp", WaypointFor::Service, true).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        store::update(d, |o| {
            o.put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
            Ok(())
        })
        .unwrap();
        assert!(apply(d, "shop", "Bad_Name", WaypointFor::Service, false).is_err());
        let out = apply(d, "shop", "wp", WaypointFor::All, true).unwrap();
        assert!(out.contains("labelled istio.io/use-waypoint=wp"), "{out}");
        let found = list(d, Some("shop")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].waypoint_for.as_str(), found[0].programmed.as_str()),
            ("all", "Unknown")
        );
        let uid =
            store::load(d).unwrap().get(&gw_key("shop", "wp")).unwrap()["metadata"]["uid"].clone();
        apply(d, "shop", "wp", WaypointFor::Service, false).unwrap();
        let again = store::load(d).unwrap();
        assert_eq!(
            again.get(&gw_key("shop", "wp")).unwrap()["metadata"]["uid"],
            uid,
            "uid kept"
        );
        assert!(
            delete(d, "shop", "other")
                .unwrap_err()
                .to_string()
                .contains("no waypoint shop/other")
        );
        let out = delete(d, "shop", "wp").unwrap();
        assert!(out.contains("label istio.io/use-waypoint removed"), "{out}");
        let after = store::load(d).unwrap();
        assert!(after.get(&gw_key("shop", "wp")).is_none());
        assert!(
            after.get(&ns_key("shop")).unwrap()["metadata"]["labels"]
                .get(USE_WAYPOINT_LABEL)
                .is_none()
        );
        assert!(list(d, None).unwrap().is_empty());
    }
}
