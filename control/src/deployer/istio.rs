//! Status of the other L7 kinds control sends to waypoints (VirtualService, DestinationRule,
//! RequestAuthentication, HTTPFault), in the shape Istio users know: `status.validationMessages` with the
//! analysis message `IST0106 SchemaValidationError` (level `ERROR`) when the waypoint would reject the object,
//! `status.observedGeneration`, and an `Accepted` condition whose message names the field at fault and says what
//! stays in force (Istio's analysis messages carry no text, so the condition does). And the Kubernetes Event of
//! type `Warning` control records for any invalid L7 object (what `kubectl describe` shows).

use serde_json::{Value, json};

use super::routes::{invalid_message, kept_generation};
use crate::index::Index;
use crate::objects::{Generic, Kind};
use crate::translate::l7::Invalid;
use crate::translate::ns_name;

/// Istio analysis code of a resource the proxies cannot use (`istioctl analyze` prints the same).
pub const IST_CODE: &str = "IST0106";
/// Name of [`IST_CODE`].
pub const IST_NAME: &str = "SchemaValidationError";
/// Reason of `Accepted=False` on these kinds.
pub const REASON_INVALID: &str = "Invalid";
/// Reason of the Warning Event about an invalid L7 object.
pub const EVENT_REASON: &str = "InvalidConfig";
/// `source.component` / `reportingComponent` of control's Events.
pub const COMPONENT: &str = "mesh-control";

/// The status apply body of `obj` (VirtualService, DestinationRule, RequestAuthentication or HTTPFault) at time
/// `now`; `invalid`: why the waypoint would reject it (`translate::l7::check`), if it would.
pub fn l7_status(
    kind: Kind,
    obj: &Generic,
    invalid: Option<&Invalid>,
    index: &Index,
    now: &str,
) -> Value {
    let (ns, name) = ns_name(&obj.metadata);
    let generation = obj.metadata.generation.unwrap_or(0);
    let (ok, reason, message, messages) = match invalid {
        None => (
            true,
            "Accepted",
            "valid; sent to the waypoints of its namespace".to_string(),
            vec![],
        ),
        Some(e) => (
            false,
            REASON_INVALID,
            invalid_message(e, kept_generation(kind, ns, name, index)),
            vec![json!({
                "type": {"code": IST_CODE, "name": IST_NAME},
                "level": "ERROR",
                "documentationUrl": format!(
                    "https://istio.io/latest/docs/reference/config/analysis/{}/",
                    IST_CODE.to_lowercase()
                ),
            })],
        ),
    };
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.to_string(),
        "metadata": {"name": name, "namespace": ns},
        "status": {
            "observedGeneration": generation,
            "validationMessages": messages,
            "conditions": [{
                "type": "Accepted",
                "status": if ok { "True" } else { "False" },
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }],
        },
    })
}

/// The message of the first `Accepted=False` condition of a status body that says the object is invalid (routes:
/// `UnsupportedValue` on a parent; the other kinds: `Invalid`), if any: what the Warning Event says.
pub fn invalid_reason(body: &Value) -> Option<String> {
    let conditions = body
        .pointer("/status/conditions")
        .into_iter()
        .chain(
            body.pointer("/status/parents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("conditions")),
        )
        .filter_map(Value::as_array)
        .flatten();
    conditions
        .filter(|c| c["type"] == "Accepted" && c["status"] == "False")
        .find(|c| {
            c["reason"] == REASON_INVALID || c["reason"] == super::routes::REASON_UNSUPPORTED_VALUE
        })
        .and_then(|c| c["message"].as_str().map(str::to_string))
}

/// A core/v1 Event of type Warning about `obj` of `kind` saying `message`, at time `now`. Its name is derived
/// from the object, generation and message, so recording it again (another pass, a restarted control) is refused
/// by the API server as already existing instead of piling up copies.
pub fn warning_event(kind: Kind, obj: &Generic, message: &str, now: &str) -> Value {
    use std::hash::{Hash, Hasher};
    let (ns, name) = ns_name(&obj.metadata);
    let generation = obj.metadata.generation.unwrap_or(0);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (kind.to_string(), generation, message).hash(&mut h);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{:016x}", h.finish()), "namespace": ns},
        "involvedObject": {
            "apiVersion": kind.api_version(),
            "kind": kind.to_string(),
            "name": name,
            "namespace": ns,
            "uid": obj.metadata.uid,
            "resourceVersion": obj.metadata.resource_version,
        },
        "type": "Warning",
        "reason": EVENT_REASON,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Object, ObjectKey, parse_documents};
    use crate::translate::Options;

    fn vs(generation: u32, weight: i64) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: shop, \
             generation: {generation}, uid: u1}}\nspec: {{hosts: [reviews], http: [{{route: [{{destination: \
             {{host: reviews}}, weight: {weight}}}]}}]}}\n"
        )
    }

    fn status_after(versions: &[String]) -> (Value, Generic) {
        let mut index = Index::new(Options::default());
        for v in versions {
            index.replace_all(parse_documents(v).expect("vs"));
        }
        let key = ObjectKey::new(Kind::VirtualService, "shop", "reviews");
        let Some(Object::Generic(_, g)) = index.object(&key).cloned() else {
            panic!("vs")
        };
        let invalid = crate::translate::l7::check(Kind::VirtualService, &g).err();
        (
            l7_status(
                Kind::VirtualService,
                &g,
                invalid.as_ref(),
                &index,
                "2026-01-01T00:00:00Z",
            ),
            (*g).clone(),
        )
    }

    #[test]
    fn invalid_istio_objects_get_a_validation_message_and_the_reason() {
        let (ok, _) = status_after(&[vs(1, 100)]);
        assert_eq!(ok["status"]["validationMessages"], json!([]));
        assert_eq!(ok["status"]["conditions"][0]["status"], "True");
        assert_eq!(invalid_reason(&ok), None);

        let (bad, obj) = status_after(&[vs(1, 100), vs(2, -5)]);
        let st = &bad["status"];
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(st["validationMessages"][0]["type"]["code"], IST_CODE);
        assert_eq!(st["validationMessages"][0]["level"], "ERROR");
        assert_eq!(st["conditions"][0]["status"], "False");
        assert_eq!(st["conditions"][0]["reason"], REASON_INVALID);
        let reason = invalid_reason(&bad).expect("invalid");
        assert!(reason.contains("spec.http[0].route[0].weight"), "{reason}");
        assert!(
            reason.contains("the last valid version (generation 1) stays in force"),
            "{reason}"
        );

        let ev = warning_event(Kind::VirtualService, &obj, &reason, "2026-01-01T00:00:00Z");
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["involvedObject"]["kind"], "VirtualService");
        assert_eq!(ev["involvedObject"]["uid"], "u1");
        assert_eq!(ev["message"], reason.as_str());
        let again = warning_event(Kind::VirtualService, &obj, &reason, "2026-01-02T00:00:00Z");
        assert_eq!(
            ev["metadata"]["name"], again["metadata"]["name"],
            "same object, generation and reason: same Event"
        );
    }
}
