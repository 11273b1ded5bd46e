//! Waypoint (L7) objects -> the Kubernetes JSON waypoints receive.
//!
//! The waypoint validates the L7 objects it receives as one set and rejects the whole response (NACK, last good
//! config kept) when any object is invalid. So that one invalid VirtualService, DestinationRule,
//! RequestAuthentication or HTTPFault cannot hold back every other change to a waypoint, control checks each of
//! them with the waypoint's own code (`mesh_api::l7`) first: an invalid object is not sent, and a warning names it
//! and the field at fault (logged like a NACK and kept in the index's warnings). Routes (HTTPRoute, GRPCRoute)
//! are sent as they are: they can refer to other objects (faults), and their status is the deployer's.

use mesh_api::l7::{self, L7Object};

use super::{Warning, ns_name};
use crate::objects::{Generic, Kind};

/// The JSON sent to waypoints for `obj` of `kind`, or `None` (with a warning) when the waypoint would reject it.
pub fn l7_object(kind: Kind, obj: &Generic, warnings: &mut Vec<Warning>) -> Option<String> {
    let json = serde_json::json!({
        "apiVersion": kind.api_version(),
        "kind": kind.to_string(),
        "metadata": obj.metadata,
        "spec": obj.spec,
    });
    if matches!(kind, Kind::HttpRoute | Kind::GrpcRoute) {
        return Some(json.to_string());
    }
    let (ns, name) = ns_name(&obj.metadata);
    let invalid = |reason: String| {
        Warning::new(
            format!("{kind} {ns}/{name}"),
            format!("invalid, not sent to waypoints: {reason}"),
        )
    };
    let text = json.to_string();
    let parsed = match l7::object_from_json(json) {
        Ok(o) => o,
        Err(e) => {
            warnings.push(invalid(e));
            return None;
        }
    };
    if let L7Object::Other { .. } = parsed {
        warnings.push(invalid("not a kind the waypoint reads".into()));
        return None;
    }
    match l7::build(std::slice::from_ref(&parsed)) {
        Ok(_) => Some(text),
        Err(errors) => {
            let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
            warnings.push(invalid(reasons.join("; ")));
            None
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
        let json = l7_object(Kind::VirtualService, &vs, &mut warnings).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["kind"], "VirtualService");
        assert_eq!(value["apiVersion"], "networking.istio.io/v1");
        assert_eq!(value["metadata"]["namespace"], "shop");
        let dr = generic(serde_json::json!({
            "host": "reviews",
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        }));
        assert!(l7_object(Kind::DestinationRule, &dr, &mut warnings).is_some());
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
            let sent = l7_object(kind, &generic(spec.clone()), &mut warnings);
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
}
