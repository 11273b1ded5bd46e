//! `meshctl local get httproutes|grpcroutes|virtualservices|destinationrules|requestauthentications|httpfaults|
//! referencegrants [NAME]`: the L7 objects of the store with the status control wrote for them. control (`--status-dir`, set by
//! `up`) writes `<state>/control/status/<Kind>/<namespace>/<name>.json` for every L7 object it checks (the status
//! a Kubernetes control would patch: routes' `Accepted` per parent, `UnsupportedValue` with the field at fault
//! for one the waypoint would reject; Istio kinds' `validationMessages` and `Accepted`); `get` shows it as the
//! object's `status`, as `kubectl get -o yaml` would. Compare `status...observedGeneration` with
//! `metadata.generation` to see whether control has seen the last apply.

use std::path::Path;

use serde_json::{Value, json};

use super::{LocalError, inspect, io, store};

/// Where control writes the statuses, inside the state directory.
pub const STATUS_DIR: &str = "control/status";

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `NAMESPACE NAME GENERATION ACCEPTED REASON MESSAGE`.
    Table,
    /// Kubernetes-shaped JSON (a `List`, or the object when a name is given).
    Json,
    /// The same as YAML.
    Yaml,
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// `obj` (of `kind`) with the status control wrote for it, if any.
pub fn with_status(dir: &Path, kind: &str, obj: &Value) -> Value {
    let path = dir
        .join(STATUS_DIR)
        .join(kind)
        .join(s(obj, "/metadata/namespace"))
        .join(format!("{}.json", s(obj, "/metadata/name")));
    let mut out = obj.clone();
    let status = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("status").cloned());
    if let Some(st) = status {
        out["status"] = st;
    }
    out
}

/// The `Accepted` condition to show: the first one that is not `True` (a route has one per parent), else the first.
fn accepted(obj: &Value) -> Option<&Value> {
    let conds: Vec<&Value> = obj
        .pointer("/status/conditions")
        .into_iter()
        .chain(
            obj.pointer("/status/parents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("conditions")),
        )
        .filter_map(Value::as_array)
        .flatten()
        .filter(|c| c["type"] == "Accepted")
        .collect();
    conds
        .iter()
        .find(|c| c["status"] != "True")
        .or(conds.first())
        .copied()
}

/// The listing of the objects of `kind` (`HTTPRoute`, `VirtualService`, ...) in `namespace` (all when `None`),
/// only `name` when given.
pub fn get(
    dir: &Path,
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    format: Format,
) -> Result<String, LocalError> {
    inspect::cluster(dir)?;
    let objects = store::load(dir)?;
    let items: Vec<Value> = objects
        .of_kind(kind, namespace)
        .filter(|o| name.is_none_or(|n| s(o, "/metadata/name") == n))
        .map(|o| with_status(dir, kind, o))
        .collect();
    if let Some(n) = name
        && items.is_empty()
    {
        return Err(io(format!("get {kind} {n}"))(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no {kind} named {n:?}{}",
                namespace
                    .map(|ns| format!(" in namespace {ns}"))
                    .unwrap_or_default()
            ),
        )));
    }
    let doc = match (name, items.as_slice()) {
        (Some(_), [one]) => one.clone(),
        _ => json!({"apiVersion": "v1", "kind": "List", "items": items}),
    };
    let render = |e: String| io("render the objects")(std::io::Error::other(e));
    match format {
        Format::Json => serde_json::to_string_pretty(&doc)
            .map(|t| t + "\n")
            .map_err(|e| render(e.to_string())),
        Format::Yaml => serde_yaml_ng::to_string(&doc).map_err(|e| render(e.to_string())),
        Format::Table => Ok(table(&items)),
    }
}

fn table(items: &[Value]) -> String {
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "GENERATION",
            "ACCEPTED",
            "REASON",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for o in items {
        let c = accepted(o);
        let text = |k: &str| {
            let t = c.and_then(|c| c[k].as_str()).unwrap_or_default();
            let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
            if t.is_empty() { "-".to_string() } else { t }
        };
        rows.push(vec![
            s(o, "/metadata/namespace").to_string(),
            s(o, "/metadata/name").to_string(),
            o.pointer("/metadata/generation")
                .map_or("-".into(), ToString::to_string),
            text("status"),
            text("reason"),
            text("message"),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 5 {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            cells.join("   ").trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_control_wrote_is_shown_on_the_object_and_in_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let route = json!({"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "shop", "generation": 2},
            "spec": {}});
        // No status written yet: the object as stored.
        assert_eq!(with_status(dir.path(), "HTTPRoute", &route), route);
        let file = dir.path().join(STATUS_DIR).join("HTTPRoute/shop/r.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let cond = |status: &str, reason: &str| json!({"type": "Accepted", "status": status, "reason": reason, "message": format!("m-{reason}")});
        let body = json!({"status": {"parents": [
            {"conditions": [cond("True", "Accepted")]},
            {"conditions": [cond("False", "UnsupportedValue")]},
        ]}});
        std::fs::write(&file, body.to_string()).unwrap();
        let shown = with_status(dir.path(), "HTTPRoute", &route);
        assert_eq!(shown["status"], body["status"]);
        assert_eq!(shown["metadata"], route["metadata"]);
        let t = table(&[shown]);
        let row = t.lines().nth(1).unwrap();
        assert!(
            row.contains("False")
                && row.contains("UnsupportedValue")
                && row.ends_with("m-UnsupportedValue"),
            "the parent that did not accept it is shown: {t}"
        );
        assert!(row.split_whitespace().nth(2) == Some("2"), "{t}");
    }
}
