//! The objects `meshctl local apply` accepts (DESIGN.md 5 and 7): multi-document YAML (or JSON,
//! `kind: List` included) parsed and validated whole before anything is stored, so that invalid
//! YAML, an unknown kind or a malformed Pod/Deployment rejects the entire input.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Errors of reading manifests.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// A file or directory could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// No manifest files in a directory.
    #[error("{0} holds no .yaml, .yml or .json file")]
    Empty(PathBuf),
    /// Not YAML.
    #[error("{file}: document {index}: not valid YAML: {detail}")]
    Yaml {
        /// The file.
        file: String,
        /// 0-based document position.
        index: usize,
        /// The parser's message.
        detail: String,
    },
    /// A document is not a usable object.
    #[error("{file}: document {index}{}: {detail}", name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: String,
        /// 0-based document position.
        index: usize,
        /// `Kind name` when known.
        name: Option<String>,
        /// What is wrong.
        detail: String,
    },
}

/// The kinds local mode stores: core kinds, Deployment and the mesh kinds of DESIGN.md 5.
pub const KINDS: [(&str, &str); 17] = [
    ("", "Namespace"),
    ("", "ServiceAccount"),
    ("", "Pod"),
    ("", "Service"),
    ("apps", "Deployment"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "GRPCRoute"),
    ("gateway.networking.k8s.io", "ReferenceGrant"),
    ("security.istio.io", "AuthorizationPolicy"),
    ("security.istio.io", "RequestAuthentication"),
    ("security.istio.io", "PeerAuthentication"),
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "DestinationRule"),
    ("waypoint.mesh.io", "HTTPFault"),
];

/// Kinds without a namespace.
const CLUSTER_SCOPED: [&str; 2] = ["Namespace", "GatewayClass"];
/// Kinds control does not read (the store keeps them; their effects reach control as pods).
const NOT_FOR_CONTROL: [&str; 1] = ["Deployment"];

/// Identifies a stored object: kind, namespace (empty when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Kind as written (`Pod`, `HTTPRoute`).
    pub kind: String,
    /// Namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// The key of `obj` (after [`normalize`]).
    pub fn of(obj: &Value) -> Self {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
        Self {
            kind: s("/kind").to_owned(),
            namespace: s("/metadata/namespace").to_owned(),
            name: s("/metadata/name").to_owned(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Whether `kind` is cluster-scoped.
pub fn cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// Whether control's file source reads `kind`.
pub fn for_control(kind: &str) -> bool {
    !NOT_FOR_CONTROL.contains(&kind)
}

/// The stored kind named like `name` (any case, plural or singular: `pods`, `Pod`, `httproute`).
pub fn kind_named(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    let n = match n.as_str() {
        "ns" => "namespace",
        "sa" => "serviceaccount",
        "po" => "pod",
        "svc" => "service",
        "deploy" => "deployment",
        other => other,
    };
    KINDS.iter().map(|(_, k)| *k).find(|k| {
        let k = k.to_ascii_lowercase();
        let ies = k.strip_suffix('y').map(|s| format!("{s}ies"));
        n == k || n == format!("{k}s") || n == format!("{k}es") || ies.as_deref() == Some(n)
    })
}

/// Reads every object of `path` (a file, or every `.yaml`/`.yml`/`.json` file of a directory,
/// sorted by name); fails on the first invalid document without returning any object.
pub fn read_path(path: &Path) -> Result<Vec<Value>, ObjectsError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ObjectsError::Read(path.into(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ObjectsError::Empty(path.into()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| ObjectsError::Read(f.clone(), e))?;
        out.extend(parse(&f.display().to_string(), &text)?);
    }
    Ok(out)
}

/// Parses and validates every document of `text` (`file` names it in errors); see [`validate`].
pub fn parse(file: &str, text: &str) -> Result<Vec<Value>, ObjectsError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| ObjectsError::Yaml {
            file: file.into(),
            index,
            detail: e.to_string(),
        })?;
        let items = match value {
            Value::Null => continue,
            v if v.get("kind").and_then(Value::as_str) == Some("List") => v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            v => vec![v],
        };
        for item in items {
            out.push(
                validate(item).map_err(|(name, detail)| ObjectsError::Invalid {
                    file: file.into(),
                    index,
                    name,
                    detail,
                })?,
            );
        }
    }
    Ok(out)
}

/// Checks one object and fills defaults (namespace `default`); the error names the object when
/// it could be read.
pub fn validate(mut obj: Value) -> Result<Value, (Option<String>, String)> {
    if !obj.is_object() {
        return Err((
            None,
            "not an object (a mapping with apiVersion, kind, metadata)".into(),
        ));
    }
    let field = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let api = field(&obj, "/apiVersion").ok_or((None, "missing apiVersion".to_owned()))?;
    let kind = field(&obj, "/kind").ok_or((None, "missing kind".to_owned()))?;
    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
    if !KINDS.contains(&(group, kind.as_str())) {
        let known: Vec<&str> = KINDS.iter().map(|(_, k)| *k).collect();
        return Err((
            None,
            format!("unknown kind {api}/{kind}; supported: {}", known.join(", ")),
        ));
    }
    let name = field(&obj, "/metadata/name").unwrap_or_default();
    let label = Some(format!("{kind} {name:?}"));
    if !dns_name(&name) {
        return Err((
            label,
            "metadata.name must be a non-empty DNS name (lower-case letters, digits, '-', '.')"
                .into(),
        ));
    }
    if !cluster_scoped(&kind) {
        let ns = field(&obj, "/metadata/namespace").unwrap_or_default();
        if ns.is_empty() {
            obj["metadata"]["namespace"] = Value::from("default");
        } else if !dns_name(&ns) {
            return Err((
                label,
                format!("metadata.namespace {ns:?} is not a DNS name"),
            ));
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    for map in ["labels", "annotations"] {
        if let Some(v) = obj["metadata"].get(map)
            && serde_json::from_value::<BTreeMap<String, String>>(v.clone()).is_err()
        {
            return Err((label, format!("metadata.{map} must map strings to strings")));
        }
    }
    match kind.as_str() {
        "Pod" => {
            typed::<k8s_openapi::api::core::v1::Pod>(&obj).map_err(|e| (label.clone(), e))?;
            check_pod_spec(obj.get("spec")).map_err(|e| (label, e))?;
        }
        "Deployment" => {
            typed::<k8s_openapi::api::apps::v1::Deployment>(&obj)
                .map_err(|e| (label.clone(), e))?;
            check_pod_spec(obj.pointer("/spec/template/spec"))
                .map_err(|e| (label.clone(), format!("spec.template: {e}")))?;
            if obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                < 0
            {
                return Err((label, "spec.replicas must not be negative".into()));
            }
        }
        "Service" => {
            typed::<k8s_openapi::api::core::v1::Service>(&obj).map_err(|e| (label, e))?;
        }
        "Namespace" => {
            typed::<k8s_openapi::api::core::v1::Namespace>(&obj).map_err(|e| (label, e))?;
        }
        "ServiceAccount" => {
            typed::<k8s_openapi::api::core::v1::ServiceAccount>(&obj).map_err(|e| (label, e))?;
        }
        _ => {}
    }
    Ok(obj)
}

fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T, String> {
    serde_json::from_value(obj.clone()).map_err(|e| format!("invalid: {e}"))
}

/// A pod spec local mode can run: at least one container, each with a `command` (the image is
/// ignored, so there is no entrypoint to fall back on).
fn check_pod_spec(spec: Option<&Value>) -> Result<(), String> {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("spec.containers must list at least one container")?;
    for (i, c) in containers.iter().enumerate() {
        let has_command = c
            .get("command")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has_command {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            return Err(format!(
                "container {i} ({name}) has no command; local mode runs command + args as a process (the image is ignored)"
            ));
        }
    }
    if spec
        .and_then(|s| s.get("hostNetwork"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(
            "hostNetwork pods are not supported in local mode (the node's network is its netns; run such a process with `ip netns exec`)".into(),
        );
    }
    if let Some(p) = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&p)
    {
        return Err(format!(
            "restartPolicy {p:?} is not one of Always, OnFailure, Never"
        ));
    }
    Ok(())
}

/// A DNS subdomain name (RFC 1123, up to 253 characters).
pub fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, command: [sleep, '1']}]\n";

    #[test]
    fn multi_document_yaml_with_lists_and_default_namespace() {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, namespace: x}}\n---\n---\n{POD}---\n\
             {{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\", \"metadata\": {{\"name\": \"p\", \"namespace\": \"shop\"}}}}]}}\n"
        );
        let objs = parse("t.yaml", &text).unwrap();
        let keys: Vec<String> = objs.iter().map(|o| Key::of(o).to_string()).collect();
        assert_eq!(
            keys,
            [
                "Namespace shop",
                "Pod default/a",
                "AuthorizationPolicy shop/p"
            ]
        );
    }

    #[test]
    fn bad_documents_are_rejected_with_a_message_naming_them() {
        for (text, needle) in [
            ("kind: [unclosed\n", "not valid YAML"),
            (
                "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: a}\n",
                "unknown kind v1/Frobnicator",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: many}\n",
                "Deployment \"d\"",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: x}]}\n",
                "has no command",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: Big}\nspec: {}\n",
                "DNS name",
            ),
            ("kind: Pod\n", "missing apiVersion"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: h}\nspec: {hostNetwork: true, containers: [{name: c, command: [x]}]}\n",
                "hostNetwork",
            ),
        ] {
            let full = format!("{POD}---\n{text}");
            let e = parse("bad.yaml", &full).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("bad.yaml"), "{text}: {e}");
        }
    }

    #[test]
    fn kind_names_take_plurals_and_short_names() {
        assert_eq!(kind_named("pods"), Some("Pod"));
        assert_eq!(kind_named("ns"), Some("Namespace"));
        assert_eq!(kind_named("Deployment"), Some("Deployment"));
        assert_eq!(kind_named("httproutes"), Some("HTTPRoute"));
        assert_eq!(kind_named("svc"), Some("Service"));
        assert_eq!(kind_named("gatewayclasses"), Some("GatewayClass"));
        assert_eq!(
            kind_named("authorizationpolicies"),
            Some("AuthorizationPolicy")
        );
        assert_eq!(kind_named("frobs"), None);
        assert!(!for_control("Deployment") && for_control("Pod"));
    }
}
