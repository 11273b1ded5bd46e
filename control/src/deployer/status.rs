//! The status control writes on a waypoint Gateway: its address (the waypoint Service's cluster IP) and the
//! Accepted / Programmed conditions of the Gateway API; and on the GatewayClasses it is the controller of:
//! Accepted (what `kubectl get gatewayclass` shows).

use serde_json::{Value, json};

use super::routes::CONTROLLER_NAME;
use crate::objects::{Gateway, Generic};

/// The status apply body of GatewayClass `class` at `now` (RFC 3339) when control is its controller
/// (`spec.controllerName` is [`CONTROLLER_NAME`]); `None` for other controllers' classes.
pub fn gateway_class_status(class: &Generic, now: &str) -> Option<Value> {
    if class.spec.get("controllerName").and_then(Value::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    Some(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": class.metadata.name},
        "status": {"conditions": [{
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "Handled by mesh-control: Gateways of this class are waypoints",
            "observedGeneration": class.metadata.generation.unwrap_or(0),
            "lastTransitionTime": now,
        }]},
    }))
}

/// Inputs of a Gateway's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Cluster IP of the waypoint's Service, once it has one.
    pub address: Option<String>,
    /// Ready waypoint pods.
    pub ready_pods: usize,
}

/// The `status` patch body (`{"apiVersion", "kind", "metadata", "status"}`, for a server-side apply of status)
/// at time `now` (RFC 3339).
pub fn gateway_status(gw: &Gateway, observed: &Observed, now: &str) -> Value {
    let generation = gw.metadata.generation.unwrap_or(0);
    let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
        json!({
            "type": type_,
            "status": if ok { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now,
        })
    };
    let programmed = observed.address.is_some() && observed.ready_pods > 0;
    let programmed_msg = match (&observed.address, observed.ready_pods) {
        (None, _) => "waiting for the waypoint Service to get an address".to_string(),
        (Some(_), 0) => "waiting for a ready waypoint pod".to_string(),
        (Some(a), n) => format!("{n} waypoint pod(s) ready behind {a}"),
    };
    let addresses: Vec<Value> = observed
        .address
        .iter()
        .map(|a| json!({"type": "IPAddress", "value": a}))
        .collect();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": gw.metadata.name, "namespace": gw.metadata.namespace},
        "status": {
            "addresses": addresses,
            "conditions": [
                condition("Accepted", true, "Accepted", "resources generated for the waypoint"),
                condition("Programmed", programmed, if programmed { "Programmed" } else { "Pending" }, &programmed_msg),
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Object, parse_documents};

    #[test]
    fn programmed_needs_an_address_and_a_ready_pod() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop, generation: 2}\n\
                    spec: {gatewayClassName: istio-waypoint}\n";
        let Object::Gateway(gw) = parse_documents(text).expect("gw").remove(0) else {
            panic!("gateway")
        };
        let cases = [
            (Observed::default(), "False", 0),
            (
                Observed {
                    address: Some("10.96.0.5".into()),
                    ready_pods: 0,
                },
                "False",
                1,
            ),
            (
                Observed {
                    address: Some("10.96.0.5".into()),
                    ready_pods: 2,
                },
                "True",
                1,
            ),
        ];
        for (observed, programmed, addresses) in cases {
            let v = gateway_status(&gw, &observed, "2026-01-01T00:00:00Z");
            let status = &v["status"];
            assert_eq!(status["conditions"][0]["status"], "True", "always Accepted");
            assert_eq!(
                status["conditions"][1]["status"], programmed,
                "{observed:?}"
            );
            assert_eq!(status["conditions"][1]["observedGeneration"], 2);
            assert_eq!(
                status["addresses"].as_array().map(Vec::len),
                Some(addresses)
            );
        }
    }
}
