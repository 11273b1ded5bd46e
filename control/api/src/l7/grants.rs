//! Gateway API `ReferenceGrant` (gateway.networking.k8s.io v1beta1, v1 accepted too): a route
//! may send to a Service in another namespace only when a grant in the Service's namespace allows
//! routes of its kind from its namespace. A reference within the route's own namespace never
//! needs one, nor does one to a Service the route is attached to (`parentRefs`: a GAMMA consumer
//! route sends the traffic it overrides where it was going anyway; upstream's MeshConsumerRoute
//! conformance test relies on it). The conversion ([`crate::l7::convert`]) applies both rules.
//!
//! ```yaml
//! apiVersion: gateway.networking.k8s.io/v1beta1
//! kind: ReferenceGrant
//! metadata: {name: from-shop, namespace: billing}
//! spec:
//!   from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
//!   to: [{group: "", kind: Service, name: invoices}]   # no name: every Service of billing
//! ```
//!
//! Fail closed: a grant whose spec does not have this shape grants nothing ([`Grant::from_object`]
//! says why; [`crate::l7::build`] lists it in [`crate::l7::L7Config::ignored`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::GATEWAY_GROUP;
use super::route::RouteKind;
use super::spec::ObjectMetaSpec;
use crate::model::FieldError;

/// Kind of [`ReferenceGrantObject`]s.
pub const GRANT_KIND: &str = "ReferenceGrant";
/// Gateway API reason for a cross-namespace reference no grant allows; backends refused for it
/// carry it at the start of their reason.
pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";

/// A whole `ReferenceGrant` object. The spec is kept as written and checked by
/// [`Grant::from_object`], so that a malformed grant is ignored (grants nothing) rather than
/// failing the whole document set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReferenceGrantObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMetaSpec,
    /// `spec`, unchecked.
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// A validated grant: routes of the kinds and namespaces of `from` may refer to the Services of
/// `to` in the grant's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The grant's namespace: where the referred Services are.
    pub namespace: String,
    /// (kind, namespace) of the Gateway API objects allowed to refer (`HTTPRoute`, `GRPCRoute`;
    /// other kinds are kept and never match a route).
    pub from: Vec<(String, String)>,
    /// The Services allowed: `None` = every Service of the namespace. Entries for other kinds
    /// are dropped (they allow nothing this mesh resolves).
    pub to: Vec<Option<String>>,
}

impl Grant {
    /// Validates a grant object.
    pub fn from_object(obj: &ReferenceGrantObject) -> Result<Self, FieldError> {
        let namespace = obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let from = entries(&obj.spec, "from")?
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = |f: &str| format!("spec.from[{i}].{f}");
                let group = text(e, "group", &at("group"))?;
                let kind = required(e, "kind", &at("kind"))?;
                let ns = required(e, "namespace", &at("namespace"))?;
                Ok((group == GATEWAY_GROUP).then(|| (kind.to_owned(), ns.to_owned())))
            })
            .collect::<Result<Vec<_>, FieldError>>()?
            .into_iter()
            .flatten()
            .collect();
        let to = entries(&obj.spec, "to")?
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = |f: &str| format!("spec.to[{i}].{f}");
                let group = text(e, "group", &at("group"))?;
                let kind = required(e, "kind", &at("kind"))?;
                let name = match e.get("name") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(_) => Some(required(e, "name", &at("name"))?.to_owned()),
                };
                let core = group.is_empty() || group == "core";
                Ok((core && kind == "Service").then_some(name))
            })
            .collect::<Result<Vec<_>, FieldError>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Self {
            namespace,
            from,
            to,
        })
    }

    /// Whether this grant lets a route of `kind` in `route_ns` refer to Service `service` of the
    /// grant's namespace.
    pub fn permits(&self, kind: RouteKind, route_ns: &str, service: &str) -> bool {
        let kind = kind.to_string();
        self.from.iter().any(|(k, ns)| *k == kind && ns == route_ns)
            && self
                .to
                .iter()
                .any(|name| name.as_deref().is_none_or(|n| n == service))
    }
}

/// `spec.<list>`: a non-empty list of objects (the CRD requires at least one entry).
fn entries<'a>(
    spec: &'a serde_json::Value,
    list: &str,
) -> Result<&'a Vec<serde_json::Value>, FieldError> {
    let field = format!("spec.{list}");
    match spec.get(list) {
        Some(serde_json::Value::Array(a)) if !a.is_empty() => {
            match a.iter().position(|e| !e.is_object()) {
                Some(i) => Err(FieldError::new(
                    format!("{field}[{i}]"),
                    "must be an object",
                )),
                None => Ok(a),
            }
        }
        Some(serde_json::Value::Array(_)) | None => {
            Err(FieldError::new(field, "needs at least one entry"))
        }
        Some(_) => Err(FieldError::new(field, "must be a list")),
    }
}

/// A string field of `e` (absent = `""`).
fn text<'a>(e: &'a serde_json::Value, key: &str, field: &str) -> Result<&'a str, FieldError> {
    match e.get(key) {
        None | Some(serde_json::Value::Null) => Ok(""),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// A string field of `e` that must be present and non-empty.
fn required<'a>(e: &'a serde_json::Value, key: &str, field: &str) -> Result<&'a str, FieldError> {
    match text(e, key, field)? {
        "" => Err(FieldError::new(field, "required")),
        s => Ok(s),
    }
}

/// Every valid grant, by namespace.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_namespace: BTreeMap<String, Vec<Grant>>,
}

impl Grants {
    /// Adds a grant.
    pub fn insert(&mut self, grant: Grant) {
        self.by_namespace
            .entry(grant.namespace.clone())
            .or_default()
            .push(grant);
    }

    /// Whether a route of `kind` in `route_ns` may refer to Service `namespace/service`: always
    /// within its own namespace, otherwise only with a grant in `namespace`.
    pub fn permits(&self, kind: RouteKind, route_ns: &str, namespace: &str, service: &str) -> bool {
        route_ns == namespace
            || self
                .by_namespace
                .get(namespace)
                .is_some_and(|gs| gs.iter().any(|g| g.permits(kind, route_ns, service)))
    }

    /// The reason of a backend refused by [`Self::permits`]: starts with [`REF_NOT_PERMITTED`].
    pub fn refused(kind: RouteKind, route_ns: &str, namespace: &str, service: &str) -> String {
        format!(
            "{REF_NOT_PERMITTED}: {kind} in namespace {route_ns} may not refer to Service \
             {namespace}/{service}: no ReferenceGrant in namespace {namespace} allows it"
        )
    }
}

#[cfg(test)]
mod tests;
