//! The Kubernetes objects control reads, parsed once from YAML/JSON into typed values.
//!
//! Core kinds use the `k8s-openapi` types; Gateway API and Istio kinds use small serde structs of their own
//! (only the fields the mesh reads; the specs of policy kinds stay JSON until translation validates them, so one
//! invalid policy is reported on its own instead of failing a whole file).

mod gateway;
pub mod slim;

use std::fmt;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

pub use gateway::{Gateway, GatewayAddress, GatewaySpec, GatewayStatus, Listener};

/// Why a document is not an object control accepts.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The text is not YAML/JSON.
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        /// 0-based position of the document in the file.
        index: usize,
        /// The parser's error.
        source: serde_yaml_ng::Error,
    },
    /// `apiVersion`/`kind` missing.
    #[error(
        "document {index}: missing {field}; every object needs apiVersion, kind and metadata.name"
    )]
    Missing {
        /// 0-based position of the document.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A kind control does not know.
    #[error(
        "document {index}: unknown kind {api_version}/{kind}; supported: Namespace, Pod, Service, EndpointSlice, \
         ServiceAccount, Gateway, GatewayClass, HTTPRoute, GRPCRoute, AuthorizationPolicy, RequestAuthentication, \
         PeerAuthentication, VirtualService, DestinationRule, HTTPFault, ReferenceGrant"
    )]
    UnknownKind {
        /// 0-based position of the document.
        index: usize,
        /// `apiVersion` as written.
        api_version: String,
        /// `kind` as written.
        kind: String,
    },
    /// The fields do not fit the kind.
    #[error("document {index} ({kind} {name:?}): invalid: {source}")]
    Invalid {
        /// 0-based position of the document.
        index: usize,
        /// The kind.
        kind: Kind,
        /// `metadata.name`, if readable.
        name: String,
        /// What is wrong.
        source: serde_json::Error,
    },
}

/// The kinds control reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // the Kubernetes kind of the same name
pub enum Kind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    ServiceAccount,
    Gateway,
    GatewayClass,
    HttpRoute,
    GrpcRoute,
    AuthorizationPolicy,
    RequestAuthentication,
    PeerAuthentication,
    VirtualService,
    DestinationRule,
    /// `waypoint.mesh.io/v1alpha1` HTTPFault (fault filters referenced by routes).
    HttpFault,
    /// `gateway.networking.k8s.io` ReferenceGrant (cross-namespace backends routes may use).
    ReferenceGrant,
}

impl Kind {
    /// The kind named `kind` in API group of `api_version`.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Some(match (group, kind) {
            ("", "Namespace") => Self::Namespace,
            ("", "Pod") => Self::Pod,
            ("", "Service") => Self::Service,
            ("", "ServiceAccount") => Self::ServiceAccount,
            ("discovery.k8s.io", "EndpointSlice") => Self::EndpointSlice,
            ("gateway.networking.k8s.io", "Gateway") => Self::Gateway,
            ("gateway.networking.k8s.io", "GatewayClass") => Self::GatewayClass,
            ("gateway.networking.k8s.io", "HTTPRoute") => Self::HttpRoute,
            ("gateway.networking.k8s.io", "GRPCRoute") => Self::GrpcRoute,
            ("security.istio.io", "AuthorizationPolicy") => Self::AuthorizationPolicy,
            ("security.istio.io", "RequestAuthentication") => Self::RequestAuthentication,
            ("security.istio.io", "PeerAuthentication") => Self::PeerAuthentication,
            ("networking.istio.io", "VirtualService") => Self::VirtualService,
            ("networking.istio.io", "DestinationRule") => Self::DestinationRule,
            ("waypoint.mesh.io", "HTTPFault") => Self::HttpFault,
            ("gateway.networking.k8s.io", "ReferenceGrant") => Self::ReferenceGrant,
            _ => return None,
        })
    }

    /// The `apiVersion` control writes for the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Namespace | Self::Pod | Self::Service | Self::ServiceAccount => "v1",
            Self::EndpointSlice => "discovery.k8s.io/v1",
            Self::Gateway | Self::GatewayClass | Self::HttpRoute | Self::GrpcRoute => {
                "gateway.networking.k8s.io/v1"
            }
            Self::AuthorizationPolicy | Self::RequestAuthentication | Self::PeerAuthentication => {
                "security.istio.io/v1"
            }
            Self::VirtualService | Self::DestinationRule => "networking.istio.io/v1",
            Self::HttpFault => "waypoint.mesh.io/v1alpha1",
            Self::ReferenceGrant => "gateway.networking.k8s.io/v1beta1",
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Self::Namespace | Self::GatewayClass)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::HttpRoute => "HTTPRoute",
            Self::GrpcRoute => "GRPCRoute",
            Self::HttpFault => "HTTPFault",
            other => return write!(f, "{other:?}"),
        };
        f.write_str(s)
    }
}

/// Identifies an object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `kind` `namespace/name`.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// An object of a kind whose spec control keeps as JSON (Istio kinds, routes), validated at translation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Generic {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// The `spec`, as written.
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// One parsed object.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // each variant holds the kind of the same name
pub enum Object {
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    ServiceAccount(Box<ServiceAccount>),
    Gateway(Box<Gateway>),
    /// Every other supported kind (policies, routes, classes): metadata and JSON spec.
    Generic(Kind, Box<Generic>),
}

impl Object {
    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Namespace(o) => &o.metadata,
            Self::Pod(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::EndpointSlice(o) => &o.metadata,
            Self::ServiceAccount(o) => &o.metadata,
            Self::Gateway(o) => &o.metadata,
            Self::Generic(_, o) => &o.metadata,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Namespace(_) => Kind::Namespace,
            Self::Pod(_) => Kind::Pod,
            Self::Service(_) => Kind::Service,
            Self::EndpointSlice(_) => Kind::EndpointSlice,
            Self::ServiceAccount(_) => Kind::ServiceAccount,
            Self::Gateway(_) => Kind::Gateway,
            Self::Generic(k, _) => *k,
        }
    }

    /// The object's key; namespaced objects without a namespace are in `default`.
    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        let meta = self.metadata();
        let ns = match (kind.namespaced(), meta.namespace.as_deref()) {
            (false, _) => "",
            (true, Some(ns)) if !ns.is_empty() => ns,
            (true, _) => "default",
        };
        ObjectKey::new(kind, ns, meta.name.as_deref().unwrap_or_default())
    }

    /// Parses one object from JSON (`index` locates it in error messages). Namespaced objects without a
    /// namespace get `default`, as `kubectl apply` does.
    pub fn from_value(index: usize, value: serde_json::Value) -> Result<Self, ObjectError> {
        let text = |field: &'static str| {
            value
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or(ObjectError::Missing { index, field })
        };
        let (api_version, kind_name) = (text("apiVersion")?, text("kind")?);
        let kind =
            Kind::from_type(&api_version, &kind_name).ok_or_else(|| ObjectError::UnknownKind {
                index,
                api_version: api_version.clone(),
                kind: kind_name.clone(),
            })?;
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .filter(|n| !n.is_empty())
            .ok_or(ObjectError::Missing {
                index,
                field: "metadata.name",
            })?
            .to_string();
        let invalid = |source| ObjectError::Invalid {
            index,
            kind,
            name: name.clone(),
            source,
        };
        // Core kinds are checked whole, then kept with only the fields control reads (`slim`).
        let mut obj = match kind {
            Kind::Namespace => Self::Namespace(Box::new(slim::namespace(
                serde_json::from_value(value).map_err(invalid)?,
            ))),
            Kind::Pod => Self::Pod(Box::new(slim::pod(
                serde_json::from_value(value).map_err(invalid)?,
            ))),
            Kind::Service => Self::Service(Box::new(slim::service(
                serde_json::from_value(value).map_err(invalid)?,
            ))),
            Kind::EndpointSlice => Self::EndpointSlice(Box::new(slim::endpoint_slice(
                serde_json::from_value(value).map_err(invalid)?,
            ))),
            Kind::ServiceAccount => Self::ServiceAccount(Box::new(slim::service_account(
                serde_json::from_value(value).map_err(invalid)?,
            ))),
            Kind::Gateway => Self::Gateway(serde_json::from_value(value).map_err(invalid)?),
            other => Self::Generic(other, serde_json::from_value(value).map_err(invalid)?),
        };
        if kind.namespaced() {
            let meta = obj.metadata_mut();
            if meta.namespace.as_deref().is_none_or(str::is_empty) {
                meta.namespace = Some("default".into());
            }
        }
        Ok(obj)
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Namespace(o) => &mut o.metadata,
            Self::Pod(o) => &mut o.metadata,
            Self::Service(o) => &mut o.metadata,
            Self::EndpointSlice(o) => &mut o.metadata,
            Self::ServiceAccount(o) => &mut o.metadata,
            Self::Gateway(o) => &mut o.metadata,
            Self::Generic(_, o) => &mut o.metadata,
        }
    }
}

/// Parses every document of a multi-document YAML (or JSON) text; `kind: List` documents contribute their
/// `items`; empty documents are skipped. All or nothing: the first bad document is the error.
pub fn parse_documents(text: &str) -> Result<Vec<Object>, ObjectError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|source| ObjectError::Yaml { index, source })?;
        match value {
            serde_json::Value::Null => {}
            v if v.get("kind").and_then(|k| k.as_str()) == Some("List") => {
                let items = v
                    .get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    out.push(Object::from_value(index, item)?);
                }
            }
            v => out.push(Object::from_value(index, v)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_document_yaml_with_defaults() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\n---\n\
                    apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n\
                    spec: {action: DENY}\n";
        let objs = parse_documents(text).expect("valid");
        let keys: Vec<String> = objs.iter().map(|o| o.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                "Namespace shop",
                "Pod default/a",
                "AuthorizationPolicy shop/p"
            ]
        );
        let Object::Generic(Kind::AuthorizationPolicy, p) = &objs[2] else {
            panic!("generic policy: {:?}", objs[2]);
        };
        assert_eq!(p.spec["action"], "DENY");
    }

    #[test]
    fn lists_are_flattened() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "namespace": "n"}}]}"#;
        let objs = parse_documents(text).expect("valid");
        assert_eq!(objs.len(), 1);
        assert_eq!(
            objs[0].key(),
            ObjectKey::new(Kind::ServiceAccount, "n", "x")
        );
    }

    #[test]
    fn bad_documents_are_located() {
        let cases = [
            ("kind: Pod\nmetadata: {name: a}\n", "missing apiVersion"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {}\n",
                "missing metadata.name",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
                "unknown kind apps/v1/Deployment",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: 3}\n",
                "Pod \"a\"",
            ),
            ("a: [", "not valid YAML"),
        ];
        for (text, want) in cases {
            let err = parse_documents(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
