//! Status of HTTPRoute / GRPCRoute objects, per parent (DESIGN.md 5): `Accepted` (the parent is a waypoint
//! Gateway, or a Service that has a waypoint: without one no proxy applies L7 routes, which the condition says)
//! and `ResolvedRefs` (every backend Service exists, every `ExtensionRef` filter names an HTTPFault waypoints
//! have: `InvalidKind` for another kind, `FilterNotFound` for a missing or invalid one; every backend or mirror
//! Service of another namespace is allowed by a ReferenceGrant there that waypoints have: `RefNotPermitted`).
//!
//! A route the waypoint would reject (checked with its own code, `translate::l7::check`) is `Accepted=False`
//! with the Gateway API reason `UnsupportedValue` on every parent, the message naming the field at fault and
//! saying whether an earlier valid version stays in force (the one waypoints have: last good config kept).

use mesh_api::l7::{FAULT_GROUP, FAULT_KIND};
use serde_json::{Value, json};

use crate::index::grants::not_permitted;
use crate::index::{Index, Resource, resource_name};
use crate::objects::{Generic, Kind, Object, ObjectKey};
use crate::translate::l7::Invalid;
use crate::translate::ns_name;
use crate::translate::waypoint::is_waypoint;

/// `controllerName` written in route parent statuses (the GatewayClass's).
pub const CONTROLLER_NAME: &str = "istio.io/mesh-controller";
/// Gateway API reason of `Accepted=False` for a route with a value the implementation does not accept.
pub const REASON_UNSUPPORTED_VALUE: &str = "UnsupportedValue";
/// Reason of `ResolvedRefs=False` for an `ExtensionRef` to an HTTPFault waypoints do not have (missing, or
/// invalid with no earlier valid version). Gateway API has no reason for filters; it allows others.
pub const REASON_FILTER_NOT_FOUND: &str = "FilterNotFound";

/// Gateway API reason of `ResolvedRefs=False` for a reference to another namespace that no ReferenceGrant
/// allows.
pub const REASON_REF_NOT_PERMITTED: &str = mesh_api::l7::REF_NOT_PERMITTED;

/// The status apply body of `route` (kind `HTTPRoute` or `GRPCRoute`) at time `now`; `invalid`: why the
/// waypoint would reject it (`translate::l7::check`), if it would.
pub fn route_status(
    kind: Kind,
    route: &Generic,
    invalid: Option<&Invalid>,
    index: &Index,
    now: &str,
) -> Value {
    let (ns, name) = ns_name(&route.metadata);
    let generation = route.metadata.generation.unwrap_or(0);
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        json!({"type": type_, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message,
               "observedGeneration": generation, "lastTransitionTime": now})
    };
    let refused = not_permitted(index, kind, route);
    let missing: Vec<String> = backend_refs(&route.spec)
        .filter(|(k, _, _)| k == "Service")
        .filter(|(_, bns, bname)| {
            let bns = bns.as_deref().unwrap_or(ns);
            index
                .object(&ObjectKey::new(Kind::Service, bns, bname))
                .is_none()
        })
        .map(|(_, bns, bname)| format!("{}/{bname}", bns.as_deref().unwrap_or(ns)))
        // A reference no grant allows is reported as such, whether or not the Service exists.
        .filter(|r| !refused.contains(r))
        .collect();
    let (bad_kinds, bad_faults) = unresolved_filters(&route.spec, ns, index);
    let resolved = if !bad_kinds.is_empty() {
        condition(
            "ResolvedRefs",
            false,
            "InvalidKind",
            format!(
                "extensionRef filter(s) of a kind the waypoint does not support (requests they apply to are \
                 answered 500): {}",
                bad_kinds.join(", ")
            ),
        )
    } else if !refused.is_empty() {
        condition(
            "ResolvedRefs",
            false,
            REASON_REF_NOT_PERMITTED,
            format!(
                "Service(s) of another namespace that no ReferenceGrant there allows this {kind} to refer to \
                 (requests routed to them are answered 500, mirrors to them are skipped): {}",
                refused.join(", ")
            ),
        )
    } else if !missing.is_empty() {
        condition(
            "ResolvedRefs",
            false,
            "BackendNotFound",
            format!("backend Service(s) not found: {}", missing.join(", ")),
        )
    } else if !bad_faults.is_empty() {
        condition(
            "ResolvedRefs",
            false,
            REASON_FILTER_NOT_FOUND,
            format!(
                "extensionRef filter(s) not resolved (requests they apply to are answered 500): {}",
                bad_faults.join("; ")
            ),
        )
    } else {
        condition(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all backend Services and filters resolve".into(),
        )
    };
    let invalid = invalid.map(|e| invalid_message(e, kept_generation(kind, ns, name, index)));
    let parents: Vec<Value> = route
        .spec
        .get("parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let (ok, reason, message) = match &invalid {
                Some(m) => (false, REASON_UNSUPPORTED_VALUE, m.clone()),
                None => accepted(p, ns, index),
            };
            json!({"parentRef": p, "controllerName": CONTROLLER_NAME,
                   "conditions": [condition("Accepted", ok, reason, message), resolved.clone()]})
        })
        .collect();
    let api_version = "gateway.networking.k8s.io/v1";
    json!({"apiVersion": api_version, "kind": kind.to_string(),
           "metadata": {"name": name, "namespace": ns}, "status": {"parents": parents}})
}

/// What a parent's `Accepted=False` says about an invalid route: the waypoint's reasons (field first) and what
/// is in force instead. `kept`: the version waypoints still have, `Some(generation)` (0 when unknown).
pub fn invalid_message(invalid: &Invalid, kept: Option<i64>) -> String {
    let instead = match kept {
        Some(g) if g > 0 => format!("the last valid version (generation {g}) stays in force"),
        Some(_) => "the last valid version stays in force".to_string(),
        None => "no valid version was accepted before, so no waypoint applies it".to_string(),
    };
    format!("invalid, not sent to waypoints: {invalid}; {instead}")
}

/// The generation of the version of `kind ns/name` waypoints have (control's resource), if any.
pub fn kept_generation(kind: Kind, ns: &str, name: &str, index: &Index) -> Option<i64> {
    match index
        .resource(&resource_name(kind, ns, name))
        .map(|e| &*e.resource)
    {
        Some(Resource::L7Object(json)) => Some(
            serde_json::from_str::<Value>(json)
                .ok()
                .and_then(|v| v.pointer("/metadata/generation").and_then(Value::as_i64))
                .unwrap_or(0),
        ),
        _ => None,
    }
}

/// Whether the parent `p` takes the route: (accepted, reason, message).
fn accepted(p: &Value, route_ns: &str, index: &Index) -> (bool, &'static str, String) {
    let text = |k: &str| p.get(k).and_then(Value::as_str);
    let kind = text("kind").unwrap_or("Gateway");
    let name = text("name").unwrap_or_default();
    let ns = text("namespace").unwrap_or(route_ns);
    match kind {
        "Service" => {
            if index
                .object(&ObjectKey::new(Kind::Service, ns, name))
                .is_none()
            {
                return (
                    false,
                    "NoMatchingParent",
                    format!("Service {ns}/{name} does not exist"),
                );
            }
            match index
                .resource(&resource_name(Kind::Service, ns, name))
                .map(|e| &*e.resource)
            {
                Some(Resource::Service(s)) if s.waypoint.is_some() => (
                    true,
                    "Accepted",
                    format!("applied by the waypoint of Service {ns}/{name}"),
                ),
                _ => (
                    false,
                    "NoWaypoint",
                    format!(
                        "Service {ns}/{name} has no waypoint, so no proxy applies this route: label the Service or its \
                         namespace istio.io/use-waypoint=<waypoint>"
                    ),
                ),
            }
        }
        "Gateway" => match index.object(&ObjectKey::new(Kind::Gateway, ns, name)) {
            Some(Object::Gateway(g)) if is_waypoint(g) => (
                true,
                "Accepted",
                format!("attached to waypoint {ns}/{name}"),
            ),
            Some(_) => (
                false,
                "NotAllowedByListeners",
                format!("Gateway {ns}/{name} is not an istio-waypoint Gateway"),
            ),
            None => (
                false,
                "NoMatchingParent",
                format!("Gateway {ns}/{name} does not exist"),
            ),
        },
        other => (
            false,
            "NoMatchingParent",
            format!("parent kind {other} is not supported"),
        ),
    }
}

/// The `ExtensionRef` filters of `spec` (rule and backend level) that waypoints cannot resolve: (unsupported
/// `group/kind`s, HTTPFaults not sent with why). An HTTPFault resolves when waypoints have a version of it.
fn unresolved_filters(spec: &Value, ns: &str, index: &Index) -> (Vec<String>, Vec<String>) {
    let rules = spec
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let lists = rules.flat_map(|r| {
        let backends = r
            .get("backendRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        std::iter::once(r.get("filters")).chain(backends.map(|b| b.get("filters")))
    });
    let refs = lists
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter(|f| f.get("type").and_then(Value::as_str) == Some("ExtensionRef"))
        .filter_map(|f| f.get("extensionRef"));
    let (mut kinds, mut faults) = (Vec::new(), Vec::new());
    for r in refs {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let (group, kind, name) = (text("group"), text("kind"), text("name"));
        if group != FAULT_GROUP || kind != FAULT_KIND {
            kinds.push(format!("{group}/{kind} {name}"));
        } else if index
            .resource(&resource_name(Kind::HttpFault, ns, name))
            .is_none()
        {
            let why = match index.object(&ObjectKey::new(Kind::HttpFault, ns, name)) {
                Some(_) => "is invalid (see its status)",
                None => "does not exist",
            };
            faults.push(format!("{FAULT_KIND} {ns}/{name} {why}"));
        }
    }
    (kinds, faults)
}

/// (kind, namespace, name) of every backendRef of every rule.
fn backend_refs(spec: &Value) -> impl Iterator<Item = (String, Option<String>, String)> + '_ {
    spec.get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|r| {
            r.get("backendRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .map(|b| {
            let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
            (
                s("kind").unwrap_or_else(|| "Service".into()),
                s("namespace"),
                s("name").unwrap_or_default(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::parse_documents;
    use crate::translate::Options;

    const MESH: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/use-waypoint: wp}}\n---\n\
        apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop}\n\
        spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: wp-1, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: wp}}\n\
        spec: {containers: [{name: c}]}\nstatus: {phase: Running, podIP: 10.1.0.9}\n---\n\
        apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n---\n\
        apiVersion: v1\nkind: Service\nmetadata: {name: direct, namespace: shop, labels: {istio.io/use-waypoint: none}}\n\
        spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}\n";

    fn status(route: &str) -> Value {
        status_after(&[route])
    }

    /// The status after the index saw each version of the route in turn.
    fn status_after(versions: &[&str]) -> Value {
        let mut index = Index::new(Options::default());
        for route in versions {
            let mut objs = parse_documents(MESH).expect("mesh");
            objs.extend(parse_documents(route).expect("route"));
            index.replace_all(objs);
        }
        let Some(Object::Generic(kind, r)) = index
            .object(&ObjectKey::new(Kind::HttpRoute, "shop", "r"))
            .cloned()
        else {
            panic!("route")
        };
        let invalid = crate::translate::l7::check(kind, &r).err();
        route_status(kind, &r, invalid.as_ref(), &index, "2026-01-01T00:00:00Z")
    }

    /// A route with one backend: a Service name (port 80) or a whole `{...}` backendRef.
    fn route(parent: &str, backend: &str) -> String {
        let backend = if backend.starts_with('{') {
            backend.replace('}', ", port: 80}")
        } else {
            format!("{{name: {backend}, port: 80}}")
        };
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: shop}}\n\
             spec: {{parentRefs: [{parent}], rules: [{{backendRefs: [{backend}]}}]}}\n"
        )
    }

    fn cond(v: &Value, i: usize) -> (String, String) {
        let c = &v["status"]["parents"][0]["conditions"][i];
        (
            c["status"].as_str().unwrap_or_default().into(),
            c["reason"].as_str().unwrap_or_default().into(),
        )
    }

    #[test]
    fn parents_and_backends_get_conditions() {
        let ok = status(&route(
            "{group: '', kind: Service, name: reviews, port: 80}",
            "reviews",
        ));
        assert_eq!(cond(&ok, 0), ("True".into(), "Accepted".into()));
        assert_eq!(cond(&ok, 1), ("True".into(), "ResolvedRefs".into()));
        assert_eq!(
            ok["status"]["parents"][0]["controllerName"],
            CONTROLLER_NAME
        );

        let no_wp = status(&route("{group: '', kind: Service, name: direct}", "nope"));
        assert_eq!(cond(&no_wp, 0), ("False".into(), "NoWaypoint".into()));
        assert!(
            no_wp["status"]["parents"][0]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("istio.io/use-waypoint"))
        );
        assert_eq!(cond(&no_wp, 1), ("False".into(), "BackendNotFound".into()));

        let gw = status(&route("{name: wp}", "reviews"));
        assert_eq!(cond(&gw, 0), ("True".into(), "Accepted".into()));
        let missing = status(&route("{name: other}", "reviews"));
        assert_eq!(
            cond(&missing, 0),
            ("False".into(), "NoMatchingParent".into())
        );
    }

    #[test]
    fn an_invalid_route_is_not_accepted_and_says_what_stays_in_force() {
        let versioned = |generation: u32, regex: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: shop, \
                 generation: {generation}}}\nspec: {{parentRefs: [{{name: wp}}, {{group: '', kind: Service, name: reviews}}], \
                 rules: [{{matches: [{{path: {{type: RegularExpression, value: '{regex}'}}}}], \
                 backendRefs: [{{name: reviews, port: 80}}]}}]}}\n"
            )
        };
        let good = versioned(1, "/v1/.*");
        let bad = versioned(2, "/v1/([");
        let ok = status_after(&[&good]);
        assert_eq!(cond(&ok, 0), ("True".into(), "Accepted".into()));

        // Invalid from the start: rejected on every parent, nothing in force.
        let fresh = status_after(&[&bad]);
        for i in 0..2 {
            let c = &fresh["status"]["parents"][i]["conditions"][0];
            assert_eq!(c["status"], "False", "{c}");
            assert_eq!(c["reason"], REASON_UNSUPPORTED_VALUE, "{c}");
            assert_eq!(c["observedGeneration"], 2, "{c}");
            let m = c["message"].as_str().unwrap_or_default();
            assert!(m.contains("spec.rules[0].matches[0].path"), "{m}");
            assert!(m.contains("no valid version was accepted before"), "{m}");
        }
        // Invalid after a valid version: that version stays in force, and the message says which.
        let kept = status_after(&[&good, &bad]);
        let m = kept["status"]["parents"][0]["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            m.contains("the last valid version (generation 1) stays in force"),
            "{m}"
        );
        assert_eq!(
            cond(&kept, 0),
            ("False".into(), REASON_UNSUPPORTED_VALUE.into())
        );
        // Fixed: accepted again.
        let fixed = status_after(&[&good, &bad, &versioned(3, "/v2/.*")]);
        assert_eq!(cond(&fixed, 0), ("True".into(), "Accepted".into()));
    }

    #[test]
    fn backends_in_other_namespaces_need_a_reference_grant() {
        let billing = "---\napiVersion: v1\nkind: Service\nmetadata: {name: invoices, namespace: billing}\n\
            spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}\n";
        let cross = route("{name: wp}", "{name: invoices, namespace: billing}") + billing;
        let grant = |from_kind: &str, to: &str| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
                 metadata: {{name: g, namespace: billing}}\nspec: {{from: [{{group: gateway.networking.k8s.io, \
                 kind: {from_kind}, namespace: shop}}], to: [{to}]}}\n"
            )
        };
        let message = |v: &Value| {
            v["status"]["parents"][0]["conditions"][1]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let denied = status(&cross);
        assert_eq!(
            cond(&denied, 1),
            ("False".into(), REASON_REF_NOT_PERMITTED.into()),
            "{denied}"
        );
        assert!(message(&denied).contains("billing/invoices"), "{denied}");
        assert_eq!(cond(&denied, 0), ("True".into(), "Accepted".into()));

        // A grant for this kind and namespace resolves it; one for another Service or kind does not.
        let all = cross.clone() + &grant("HTTPRoute", "{group: '', kind: Service}");
        let named =
            cross.clone() + &grant("HTTPRoute", "{group: '', kind: Service, name: invoices}");
        for with in [&all, &named] {
            let ok = status(with);
            assert_eq!(cond(&ok, 1), ("True".into(), "ResolvedRefs".into()), "{ok}");
        }
        for other in [
            grant("HTTPRoute", "{group: '', kind: Service, name: payments}"),
            grant("GRPCRoute", "{group: '', kind: Service}"),
            // Malformed: grants nothing.
            grant("HTTPRoute", "{group: '', kind: Service, name: [invoices]}"),
        ] {
            let v = status(&(cross.clone() + &other));
            assert_eq!(
                cond(&v, 1),
                ("False".into(), REASON_REF_NOT_PERMITTED.into()),
                "{other}: {v}"
            );
        }

        // Added later: resolved; deleted again: refused; made malformed: refused (the valid version is not kept).
        let flips = status_after(&[&cross, &all]);
        assert_eq!(cond(&flips, 1), ("True".into(), "ResolvedRefs".into()));
        let back = status_after(&[&cross, &all, &cross]);
        assert_eq!(
            cond(&back, 1),
            ("False".into(), REASON_REF_NOT_PERMITTED.into())
        );
        let broken = cross.clone() + &grant("HTTPRoute", "{group: '', kind: Service, name: 7}");
        let spoiled = status_after(&[&all, &broken]);
        assert_eq!(
            cond(&spoiled, 1),
            ("False".into(), REASON_REF_NOT_PERMITTED.into())
        );

        // A missing Service in another namespace without a grant is reported as not permitted, not as missing.
        let absent = status(&route("{name: wp}", "{name: nope, namespace: billing}"));
        assert_eq!(
            cond(&absent, 1),
            ("False".into(), REASON_REF_NOT_PERMITTED.into())
        );
        // A consumer route sending to its own Service parent: no grant needed (the waypoint's rule).
        let consumer = route(
            "{group: '', kind: Service, name: invoices, namespace: billing}",
            "{name: invoices, namespace: billing}",
        ) + billing;
        let v = status(&consumer);
        assert_eq!(cond(&v, 1), ("True".into(), "ResolvedRefs".into()), "{v}");
        // Same namespace: no grant needed.
        let local = status(&route("{name: wp}", "{name: reviews, namespace: shop}"));
        assert_eq!(
            cond(&local, 1),
            ("True".into(), "ResolvedRefs".into()),
            "{local}"
        );
    }

    #[test]
    fn extension_refs_must_name_an_httpfault_waypoints_have() {
        let with_filter = |group: &str, kind: &str, name: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: shop}}\n\
                 spec: {{parentRefs: [{{name: wp}}], rules: [{{filters: [{{type: ExtensionRef, extensionRef: \
                 {{group: {group}, kind: {kind}, name: {name}}}}}], backendRefs: [{{name: reviews, port: 80}}]}}]}}\n\
                 ---\napiVersion: waypoint.mesh.io/v1alpha1\nkind: HTTPFault\nmetadata: {{name: good, namespace: shop}}\n\
                 spec: {{abort: {{httpStatus: 503, percentage: 100}}}}\n---\napiVersion: waypoint.mesh.io/v1alpha1\n\
                 kind: HTTPFault\nmetadata: {{name: bad, namespace: shop}}\nspec: {{abort: {{httpStatus: 42}}}}\n"
            )
        };
        let ok = status(&with_filter("waypoint.mesh.io", "HTTPFault", "good"));
        assert_eq!(cond(&ok, 1), ("True".into(), "ResolvedRefs".into()), "{ok}");
        for (name, why) in [("bad", "is invalid"), ("nope", "does not exist")] {
            let v = status(&with_filter("waypoint.mesh.io", "HTTPFault", name));
            assert_eq!(
                cond(&v, 1),
                ("False".into(), REASON_FILTER_NOT_FOUND.into()),
                "{v}"
            );
            let m = v["status"]["parents"][0]["conditions"][1]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(m.contains(&format!("HTTPFault shop/{name} {why}")), "{m}");
            assert_eq!(
                cond(&v, 0),
                ("True".into(), "Accepted".into()),
                "the route itself is valid"
            );
        }
        let other = status(&with_filter("example.com", "Thing", "t"));
        assert_eq!(
            cond(&other, 1),
            ("False".into(), "InvalidKind".into()),
            "{other}"
        );
    }
}
