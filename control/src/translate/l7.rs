//! Waypoint (L7) objects -> the Kubernetes JSON waypoints receive.
//!
//! The waypoint validates the L7 objects it receives as one set and rejects the whole response (NACK, last good
//! config kept) when any object is invalid. So that one invalid object cannot hold back every other change to a
//! waypoint, control checks each HTTPRoute, GRPCRoute, HTTPFault, ReferenceGrant, VirtualService,
//! DestinationRule and RequestAuthentication with the waypoint's own code first ([`check`]: `mesh_api::l7::object_from_json` +
//! `mesh_api::l7::build`, what the waypoint runs on the set): an invalid object is not sent, and a warning names
//! it and the field at fault (logged like a NACK, kept in the index's warnings; the deployer writes it into the
//! object's status).
//!
//! Last good config kept: when an object that was valid becomes invalid, the version waypoints already have stays
//! in force ([`l7_object`] returns the previous JSON), as the waypoint itself keeps its last good config after a
//! NACK. A route's validity does not depend on other objects (an `ExtensionRef` to a missing or invalid
//! HTTPFault is resolved per request: 500; a backend in another namespace without a ReferenceGrant is a backend
//! answered 500), so checking one object at a time gives the waypoint's answer for it.
//!
//! ReferenceGrants fail closed instead: a malformed one (which the waypoint would ignore) is not sent and the
//! version waypoints had is not kept either, so it grants nothing.
//! The kept version lives in control's memory: after a control restart an object that is still invalid is not
//! sent at all, so waypoints drop the old version.

use mesh_api::l7::{self, L7Error, L7Object};

use super::{Warning, ns_name};
use crate::objects::{Generic, Kind};

/// Why the waypoint would reject an object: one entry per error, each `field: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The errors, in the waypoint's words (field path first when the error has one).
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reasons.join("; "))
    }
}

/// The Kubernetes JSON of `obj` of `kind`, as waypoints receive it.
pub fn json_of(kind: Kind, obj: &Generic) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": kind.api_version(),
        "kind": kind.to_string(),
        "metadata": obj.metadata,
        "spec": obj.spec,
    })
}

/// Checks `obj` of `kind` with the waypoint's parser and validator; `Ok` holds the JSON to send.
pub fn check(kind: Kind, obj: &Generic) -> Result<String, Invalid> {
    let json = json_of(kind, obj);
    let text = json.to_string();
    let one = |r: String| Invalid {
        reasons: vec![one_line(&r)],
    };
    let parsed = l7::object_from_json(json).map_err(one)?;
    if let L7Object::Other { .. } = parsed {
        return Err(one("not a kind the waypoint reads".into()));
    }
    match l7::build(std::slice::from_ref(&parsed)) {
        Ok(c) if c.ignored.is_empty() => Ok(text),
        Ok(c) => Err(Invalid {
            reasons: c.ignored.iter().map(reason).collect(),
        }),
        Err(errors) => Err(Invalid {
            reasons: errors.iter().map(reason).collect(),
        }),
    }
}

/// One error on one line; the object is named by the caller, so only the field path and the reason.
fn reason(e: &L7Error) -> String {
    match e {
        L7Error::Invalid { source, .. } => one_line(&source.to_string()),
        other => one_line(&other.to_string()),
    }
}

/// `text` on one line (a regex error spans several): a status message, a log field, a table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The JSON sent to waypoints for `obj` of `kind`. When the waypoint would reject it: `previous` (the version
/// waypoints have, kept in force) or `None`, with a warning naming the object and the field at fault.
pub fn l7_object(
    kind: Kind,
    obj: &Generic,
    previous: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Option<String> {
    match check(kind, obj) {
        Ok(text) => Some(text),
        Err(invalid) => {
            let (ns, name) = ns_name(&obj.metadata);
            // A grant that became malformed must not keep granting (fail closed).
            let previous = previous.filter(|_| kind != Kind::ReferenceGrant);
            let kept = match previous {
                Some(_) => "; the last valid version stays in force",
                None => "",
            };
            warnings.push(Warning::new(
                format!("{kind} {ns}/{name}"),
                format!("invalid, not sent to waypoints: {invalid}{kept}"),
            ));
            previous.map(str::to_string)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(spec: serde_json::Value) -> Generic {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("generic object")
    }

    #[test]
    fn valid_istio_objects_are_sent_as_kubernetes_json() {
        let mut warnings = Vec::new();
        let vs = generic(serde_json::json!({
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}],
        }));
        let json = l7_object(Kind::VirtualService, &vs, None, &mut warnings).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["kind"], "VirtualService");
        assert_eq!(value["apiVersion"], "networking.istio.io/v1");
        assert_eq!(value["metadata"]["namespace"], "shop");
        let dr = generic(serde_json::json!({
            "host": "reviews",
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        }));
        assert!(l7_object(Kind::DestinationRule, &dr, None, &mut warnings).is_some());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn invalid_istio_objects_are_reported_and_not_sent() {
        let cases = [
            // A retry count that is not a number: a parse error.
            (
                Kind::VirtualService,
                serde_json::json!({"hosts": ["reviews"], "http": [{"retries": {"attempts": "many"},
                    "route": [{"destination": {"host": "reviews"}}]}]}),
            ),
            // Weights that are not a percentage split: a validation error of the waypoint's code.
            (
                Kind::VirtualService,
                serde_json::json!({"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews"}, "weight": -5}]}]}),
            ),
            (
                Kind::DestinationRule,
                serde_json::json!({"host": "reviews", "subsets": [{"labels": {"version": "v1"}}]}),
            ),
            (
                Kind::RequestAuthentication,
                serde_json::json!({"jwtRules": [{"issuer": "https://issuer", "jwks": "not a key set"}]}),
            ),
        ];
        for (kind, spec) in cases {
            let mut warnings = Vec::new();
            let sent = l7_object(kind, &generic(spec.clone()), None, &mut warnings);
            assert!(sent.is_none(), "{kind} {spec} was sent");
            assert_eq!(warnings.len(), 1, "{kind} {spec}");
            assert_eq!(warnings[0].object, format!("{kind} shop/reviews"));
            assert!(
                warnings[0]
                    .message
                    .starts_with("invalid, not sent to waypoints: "),
                "{}",
                warnings[0].message
            );
        }
    }

    fn route(path: serde_json::Value) -> Generic {
        generic(serde_json::json!({
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 80}],
            "rules": [{"matches": [{"path": path}], "backendRefs": [{"name": "reviews-v2", "port": 80}]}],
        }))
    }

    #[test]
    fn routes_are_checked_with_the_waypoint_code() {
        let mut warnings = Vec::new();
        let good = route(serde_json::json!({"type": "RegularExpression", "value": "/v[0-9]+/.*"}));
        let sent = l7_object(Kind::HttpRoute, &good, None, &mut warnings).expect("valid route");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(sent.contains("RegularExpression"), "{sent}");

        // A regex the waypoint cannot compile: the field is named, nothing is sent.
        let bad = route(serde_json::json!({"type": "RegularExpression", "value": "/v([0-9"}));
        let invalid = check(Kind::HttpRoute, &bad).expect_err("bad regex");
        assert_eq!(invalid.reasons.len(), 1, "{invalid}");
        assert!(!invalid.reasons[0].contains('\n'), "one line: {invalid}");
        assert!(
            invalid.reasons[0].starts_with("spec.rules[0].matches[0].path"),
            "{invalid}"
        );
        assert!(l7_object(Kind::HttpRoute, &bad, None, &mut warnings).is_none());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].object, "HTTPRoute shop/reviews");
        assert!(
            !warnings[0].message.contains("stays in force"),
            "{}",
            warnings[0].message
        );

        // The same bad update of a route that was valid: the previous version stays, and the warning says so.
        let mut warnings = Vec::new();
        let kept = l7_object(Kind::HttpRoute, &bad, Some(&sent), &mut warnings);
        assert_eq!(kept.as_deref(), Some(sent.as_str()));
        assert!(
            warnings[0]
                .message
                .contains("the last valid version stays in force"),
            "{}",
            warnings[0].message
        );

        // A valid update replaces the kept version.
        let fixed = route(serde_json::json!({"type": "RegularExpression", "value": "/v1/.*"}));
        let mut warnings = Vec::new();
        let new = l7_object(Kind::HttpRoute, &fixed, Some(&sent), &mut warnings).expect("fixed");
        assert!(warnings.is_empty() && new != sent && new.contains("/v1/.*"));
    }

    #[test]
    fn invalid_routes_of_both_kinds_are_rejected() {
        let cases = [
            (
                Kind::HttpRoute,
                serde_json::json!({"rules": [{"filters": [{"type": "NoSuchFilter"}]}]}),
            ),
            (
                Kind::HttpRoute,
                serde_json::json!({"rules": [{"matches": [{"path": {"type": "Exact", "value": "no-slash"}}]}]}),
            ),
            (
                Kind::HttpRoute,
                serde_json::json!({"rules": [{"matches": [{"headers": [{"name": "bad header", "value": "x"}]}]}]}),
            ),
            (
                Kind::GrpcRoute,
                serde_json::json!({"rules": [{"matches": [{"method": {"service": "a/b", "method": "M"}}]}]}),
            ),
            (
                Kind::GrpcRoute,
                serde_json::json!({"rules": [{"matches": [{"method": {"type": "RegularExpression", "service": "(", "method": "M"}}]}]}),
            ),
        ];
        for (kind, spec) in cases {
            let mut warnings = Vec::new();
            assert!(
                l7_object(kind, &generic(spec.clone()), None, &mut warnings).is_none(),
                "{kind} {spec} was sent"
            );
            assert_eq!(warnings.len(), 1, "{kind} {spec}");
            assert!(
                warnings[0].message.contains("spec.rules[0]"),
                "{kind} {spec}: {}",
                warnings[0].message
            );
        }
        let grpc = generic(
            serde_json::json!({"rules": [{"matches": [{"method": {"service": "shop.Reviews", "method": "Get"}}],
            "backendRefs": [{"name": "reviews", "port": 80}]}]}),
        );
        assert!(check(Kind::GrpcRoute, &grpc).is_ok());
    }

    #[test]
    fn malformed_reference_grants_are_not_sent_and_do_not_keep_an_earlier_version() {
        let grant = |to: serde_json::Value| {
            generic(serde_json::json!({
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "web"}],
                "to": [to],
            }))
        };
        let mut warnings = Vec::new();
        let good = grant(serde_json::json!({"group": "", "kind": "Service"}));
        let sent =
            l7_object(Kind::ReferenceGrant, &good, None, &mut warnings).expect("valid grant");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(sent.contains("\"kind\":\"ReferenceGrant\""), "{sent}");

        let bad = grant(serde_json::json!({"group": "", "kind": "Service", "name": 7}));
        let invalid = check(Kind::ReferenceGrant, &bad).expect_err("malformed grant");
        assert!(
            invalid.reasons[0].starts_with("spec.to[0].name"),
            "{invalid}"
        );
        // Even with a valid version sent before: not kept (fail closed).
        assert_eq!(
            l7_object(Kind::ReferenceGrant, &bad, Some(&sent), &mut warnings),
            None
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            !warnings[0].message.contains("stays in force"),
            "{warnings:?}"
        );
    }
}

#[cfg(test)]
mod index_tests {
    use crate::index::{Change, Index, resource_name};
    use crate::objects::{Kind, ObjectKey, parse_documents};
    use crate::translate::Options;

    fn route(regex: &str) -> crate::objects::Object {
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: shop}}\n\
             spec: {{parentRefs: [{{kind: Service, group: '', name: reviews}}], rules: [{{matches: [{{path: \
             {{type: RegularExpression, value: '{regex}'}}}}], backendRefs: [{{name: reviews, port: 80}}]}}]}}\n"
        );
        parse_documents(&text).expect("route").remove(0)
    }

    #[test]
    fn an_invalid_update_keeps_the_last_valid_version_until_fixed_or_deleted() {
        let mut index = Index::new(Options::default());
        let name = resource_name(Kind::HttpRoute, "shop", "r");
        let sent = |index: &Index| match index.resource(&name).map(|e| &*e.resource) {
            Some(crate::index::Resource::L7Object(j)) => Some(j.clone()),
            _ => None,
        };
        // Invalid from the start: nothing is sent.
        index.apply([Change::Upsert(route("/v(["))]);
        assert_eq!(sent(&index), None);
        assert_eq!(index.warnings().count(), 1);
        // Valid: sent.
        let changed = index.apply([Change::Upsert(route("/v1/.*"))]);
        assert_eq!(changed, vec![name.clone()]);
        let good = sent(&index).expect("valid route sent");
        assert!(good.contains("/v1/.*"));
        assert_eq!(index.warnings().count(), 0);
        // An invalid update: no change for waypoints, the valid version stays, a warning says why.
        let changed = index.apply([Change::Upsert(route("/v2/(["))]);
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(sent(&index).as_deref(), Some(good.as_str()));
        let w: Vec<String> = index.warnings().map(ToString::to_string).collect();
        assert!(
            w.len() == 1 && w[0].contains("stays in force") && w[0].contains("spec.rules[0]"),
            "{w:?}"
        );
        // Fixed: the new version replaces it.
        index.apply([Change::Upsert(route("/v2/.*"))]);
        assert!(sent(&index).is_some_and(|j| j.contains("/v2/.*")));
        // Invalid again, then deleted: gone.
        index.apply([Change::Upsert(route("(("))]);
        assert!(sent(&index).is_some());
        index.apply([Change::Delete(ObjectKey::new(Kind::HttpRoute, "shop", "r"))]);
        assert_eq!(sent(&index), None);
    }
}
