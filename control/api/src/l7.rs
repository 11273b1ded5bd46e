//! Layer-7 routing for the waypoint, as pure logic: Gateway API `HTTPRoute` / `GRPCRoute`
//! (gateway.networking.k8s.io/v1) parsed from Kubernetes YAML ([`spec`]), validated into
//! [`Route`]s ([`convert`]), indexed by what they attach to with Gateway API precedence
//! ([`RouteTable`]), request matching ([`RequestView`]), filters ([`filters`]), weighted
//! backends ([`pick_backend`]), timeouts, retries and fault injection ([`fault`], our `HTTPFault`
//! kind referenced by an `ExtensionRef` filter), and the `ReferenceGrant`s that let routes send to
//! Services of other namespaces ([`grants`]).
//!
//! Control's translation and the waypoint both use this API: [`parse_documents`] reads YAML,
//! [`build_routes`] validates a whole set (every invalid object is reported with its reason;
//! callers keep their last good set when it fails).

pub mod authn;
pub mod authz;
pub mod convert;
pub mod cors;
pub mod duration;
pub mod fault;
pub mod filters;
pub mod grants;
pub mod istio;
pub mod matching;
pub mod pattern;
pub mod route;
pub mod spec;
pub mod table;

use std::collections::HashMap;

use serde::Deserialize;

pub use convert::{ConvertContext, check_header_name, check_header_value};
pub use cors::Cors;
pub use duration::parse_duration;
pub use fault::{FAULT_GROUP, FAULT_KIND, Fault, FaultAction};
pub use filters::{HeaderEdit, RequestTarget};
pub use grants::{GRANT_KIND, Grant, Grants, REF_NOT_PERMITTED, ReferenceGrantObject};
pub use matching::{RequestView, SimpleRequest};
pub use pattern::{Pattern, ValueMatch};
pub use route::{
    Backend, BackendTarget, Filter, HeaderModifier, Mirror, NamedMatch, Parent, PathMatch,
    PathModifier, Redirect, Retry, Route, RouteKind, RouteMatch, Rule, Timeouts, UrlRewrite,
};
pub use spec::{GrpcRouteObject, HttpFaultObject, HttpRouteObject};
pub use table::{Destination, RouteTable, Selection, pick_backend};

use crate::model::FieldError;

/// Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Why L7 config was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum L7Error {
    /// A YAML document could not be read.
    #[error("{source_name}: document {index}: not valid YAML/JSON: {message}")]
    Yaml {
        /// File (or stream) name.
        source_name: String,
        /// 0-based document index.
        index: usize,
        /// Parser message.
        message: String,
    },
    /// An object is invalid.
    #[error("{kind} {namespace}/{name}: {source}")]
    Invalid {
        /// Object kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The offending field and why.
        source: FieldError,
    },
    /// Two objects share kind, namespace and name.
    #[error(
        "{kind} {namespace}/{name} is defined twice; names must be unique per kind and namespace"
    )]
    Duplicate {
        /// Object kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// An object of a kind the L7 layer reads.
#[derive(Debug, Clone, PartialEq)]
pub enum L7Object {
    /// `HTTPRoute`.
    HttpRoute(HttpRouteObject),
    /// `GRPCRoute`.
    GrpcRoute(GrpcRouteObject),
    /// Our `HTTPFault`.
    Fault(HttpFaultObject),
    /// Gateway API `ReferenceGrant` (v1beta1 or v1): cross-namespace backends it allows.
    ReferenceGrant(Box<ReferenceGrantObject>),
    /// Istio `AuthorizationPolicy` (`security.istio.io`); enforced by the waypoint when it has
    /// `targetRefs` to the waypoint or a service (see [`authz`]).
    AuthorizationPolicy(Box<AuthorizationPolicyObject>),
    /// Istio `RequestAuthentication` (`security.istio.io`): JWT rules.
    RequestAuthentication(Box<authn::RequestAuthenticationObject>),
    /// Istio `VirtualService` (`networking.istio.io`).
    VirtualService(Box<istio::spec::VirtualServiceObject>),
    /// Istio `DestinationRule` (`networking.istio.io`).
    DestinationRule(Box<istio::spec::DestinationRuleObject>),
    /// Another kind (ignored by the L7 layer; other parts of the mesh may read it).
    Other {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Reads every YAML document of `text` (`---`-separated; empty documents skipped).
/// `source_name` names the file in errors.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<L7Object>, L7Error> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| L7Error::Yaml {
            source_name: source_name.to_owned(),
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        out.push(object_from_yaml(value).map_err(|message| L7Error::Yaml {
            source_name: source_name.to_owned(),
            index,
            message,
        })?);
    }
    Ok(out)
}

/// Reads one object given as JSON (how control keeps the specs of the kinds it watches).
pub fn object_from_json(value: serde_json::Value) -> Result<L7Object, String> {
    object_from_yaml(serde_yaml_ng::to_value(value).map_err(|e| e.to_string())?)
}

/// Reads `value` as a `T`; the error names the field at fault (`spec.rules[0].matches: ...`).
fn typed<T: serde::de::DeserializeOwned>(value: serde_yaml_ng::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "" | "." => e.into_inner().to_string(),
            _ => format!("{path}: {}", e.into_inner()),
        }
    })
}

fn object_from_yaml(value: serde_yaml_ng::Value) -> Result<L7Object, String> {
    let err = |e: serde_yaml_ng::Error| e.to_string();
    let tm: TypeMeta = serde_yaml_ng::from_value(value.clone()).map_err(err)?;
    let group = tm.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    Ok(match (group, tm.kind.as_str()) {
        (GATEWAY_GROUP, "HTTPRoute") => L7Object::HttpRoute(typed(value)?),
        (GATEWAY_GROUP, "GRPCRoute") => L7Object::GrpcRoute(typed(value)?),
        (FAULT_GROUP, FAULT_KIND) => L7Object::Fault(typed(value)?),
        (GATEWAY_GROUP, GRANT_KIND) => L7Object::ReferenceGrant(Box::new(typed(value)?)),
        ("security.istio.io", "AuthorizationPolicy") => {
            L7Object::AuthorizationPolicy(Box::new(typed(value)?))
        }
        ("security.istio.io", "RequestAuthentication") => {
            L7Object::RequestAuthentication(Box::new(typed(value)?))
        }
        ("networking.istio.io", "VirtualService") => {
            L7Object::VirtualService(Box::new(typed(value)?))
        }
        ("networking.istio.io", "DestinationRule") => {
            L7Object::DestinationRule(Box::new(typed(value)?))
        }
        _ => L7Object::Other {
            api_version: tm.api_version,
            kind: tm.kind,
        },
    })
}

fn ns_of(m: &spec::ObjectMetaSpec) -> String {
    m.namespace.clone().unwrap_or_else(|| "default".into())
}

/// A whole `AuthorizationPolicy` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AuthorizationPolicyObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: spec::ObjectMetaSpec,
    /// `spec`.
    #[serde(default)]
    pub spec: crate::authz::AuthorizationPolicySpec,
}

/// Everything the waypoint's L7 layer is configured with.
#[derive(Debug, Clone, Default)]
pub struct L7Config {
    /// Validated routes.
    pub routes: Vec<Route>,
    /// Validated authorization policies (from the same objects), ALLOW and DENY.
    pub policies: Vec<crate::authz::Policy>,
    /// Validated `action: AUDIT` policies: the waypoint logs the requests they match and never
    /// denies for them. Kept apart, with their rules and an ALLOW action, so that no evaluator
    /// that knows only ALLOW and DENY can enforce them by mistake.
    pub audit_policies: Vec<crate::authz::Policy>,
    /// Validated DestinationRules.
    pub destination_rules: Vec<istio::DestinationRule>,
    /// Validated RequestAuthentications.
    pub authentications: Vec<authn::RequestAuthentication>,
    /// Objects left out without failing the set, with why: malformed `ReferenceGrant`s, which
    /// grant nothing (fail closed) rather than holding back every other change.
    pub ignored: Vec<L7Error>,
}

/// Validates a whole set of objects into routes. Every invalid object and duplicate is reported
/// (all of them, so an operator can fix them in one go); nothing is returned on error.
pub fn build_routes(objects: &[L7Object]) -> Result<Vec<Route>, Vec<L7Error>> {
    build(objects).map(|c| c.routes)
}

/// Validates a whole set of objects (routes, faults, authorization policies): all or nothing.
pub fn build(objects: &[L7Object]) -> Result<L7Config, Vec<L7Error>> {
    let mut errors = Vec::new();
    let mut ctx = ConvertContext::default();
    let mut seen = HashMap::new();
    let mut unique = |kind: &str, ns: &str, name: &str, errors: &mut Vec<L7Error>| {
        let key = (kind.to_owned(), ns.to_owned(), name.to_owned());
        if seen.insert(key, ()).is_some() {
            errors.push(L7Error::Duplicate {
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
            });
        }
    };
    for o in objects {
        if let L7Object::Fault(f) = o {
            let ns = ns_of(&f.metadata);
            unique(FAULT_KIND, &ns, &f.metadata.name, &mut errors);
            match Fault::from_spec(&f.spec) {
                Ok(fault) => {
                    ctx.faults.insert((ns, f.metadata.name.clone()), fault);
                }
                Err(source) => errors.push(L7Error::Invalid {
                    kind: FAULT_KIND.into(),
                    namespace: ns,
                    name: f.metadata.name.clone(),
                    source,
                }),
            }
        }
    }
    let mut ignored = Vec::new();
    for o in objects {
        if let L7Object::ReferenceGrant(g) = o {
            let ns = ns_of(&g.metadata);
            unique(GRANT_KIND, &ns, &g.metadata.name, &mut errors);
            match Grant::from_object(g) {
                Ok(grant) => ctx.grants.insert(grant),
                Err(source) => ignored.push(L7Error::Invalid {
                    kind: GRANT_KIND.into(),
                    namespace: ns,
                    name: g.metadata.name.clone(),
                    source,
                }),
            }
        }
    }
    let mut routes = Vec::new();
    for o in objects {
        let (kind, meta, result) = match o {
            L7Object::HttpRoute(r) => ("HTTPRoute", &r.metadata, convert::http_route(r, &ctx)),
            L7Object::GrpcRoute(r) => ("GRPCRoute", &r.metadata, convert::grpc_route(r, &ctx)),
            L7Object::VirtualService(v) => {
                ("VirtualService", &v.metadata, istio::virtual_service(v))
            }
            _ => continue,
        };
        let ns = ns_of(meta);
        unique(kind, &ns, &meta.name, &mut errors);
        match result {
            Ok(r) => routes.push(r),
            Err(source) => errors.push(L7Error::Invalid {
                kind: kind.into(),
                namespace: ns,
                name: meta.name.clone(),
                source,
            }),
        }
    }
    let mut policies = Vec::new();
    let mut audit_policies = Vec::new();
    for o in objects {
        let L7Object::AuthorizationPolicy(p) = o else {
            continue;
        };
        let ns = ns_of(&p.metadata);
        unique("AuthorizationPolicy", &ns, &p.metadata.name, &mut errors);
        let mut spec = p.spec.clone();
        let audit = spec.action.as_deref() == Some("AUDIT");
        if audit {
            spec.action = None;
        }
        match crate::authz::Policy::from_spec(&p.metadata.name, &ns, spec) {
            Ok(policy) if audit => audit_policies.push(policy),
            Ok(policy) => policies.push(policy),
            Err(e) => errors.push(L7Error::Invalid {
                kind: "AuthorizationPolicy".into(),
                namespace: ns,
                name: p.metadata.name.clone(),
                source: match e {
                    crate::authz::PolicyError::Field(f) => f,
                    other => FieldError::new("spec.action", other.to_string()),
                },
            }),
        }
    }
    let mut destination_rules = Vec::new();
    for o in objects {
        let L7Object::DestinationRule(d) = o else {
            continue;
        };
        let ns = ns_of(&d.metadata);
        unique("DestinationRule", &ns, &d.metadata.name, &mut errors);
        match istio::destination_rule(d) {
            Ok(dr) => destination_rules.push(dr),
            Err(source) => errors.push(L7Error::Invalid {
                kind: "DestinationRule".into(),
                namespace: ns,
                name: d.metadata.name.clone(),
                source,
            }),
        }
    }
    let mut authentications = Vec::new();
    for o in objects {
        let L7Object::RequestAuthentication(a) = o else {
            continue;
        };
        let ns = ns_of(&a.metadata);
        unique("RequestAuthentication", &ns, &a.metadata.name, &mut errors);
        match authn::request_authentication(a) {
            Ok(ra) => authentications.push(ra),
            Err(source) => errors.push(L7Error::Invalid {
                kind: "RequestAuthentication".into(),
                namespace: ns,
                name: a.metadata.name.clone(),
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(L7Config {
            routes,
            policies,
            audit_policies,
            destination_rules,
            authentications,
            ignored,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
