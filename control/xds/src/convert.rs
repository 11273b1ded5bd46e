//! Wire <-> model conversion. Workloads and services are typed protobuf messages; policies travel as the
//! `mesh-api` resource JSON (Istio's field names), validated again on receipt.

use std::net::IpAddr;

use mesh_api::peer_auth::PeerAuthentication;
use mesh_api::{Policy, Protocol, Service, ServicePort, WaypointRef, Workload};

use crate::pb;

/// A resource received from control that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// An address is not 4 or 16 bytes.
    #[error("{resource}: address of {len} bytes (expected 4 or 16)")]
    Address {
        /// Resource name.
        resource: String,
        /// Length found.
        len: usize,
    },
    /// A port is out of range.
    #[error("{resource}: port {port} out of range")]
    Port {
        /// Resource name.
        resource: String,
        /// Value found.
        port: u32,
    },
    /// A policy's JSON is not a valid policy.
    #[error("{resource}: invalid policy: {message}")]
    Policy {
        /// Resource name.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// The resource carries no value.
    #[error("{0}: empty resource")]
    Empty(String),
}

/// A resource of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the mesh-api type of the same name
pub enum Value {
    Workload(Workload),
    Service(Service),
    AuthorizationPolicy(Policy),
    PeerAuthentication(PeerAuthentication),
    /// A waypoint (L7) object as Kubernetes JSON, validated by the waypoint (`mesh_api::l7`).
    L7Object(String),
}

/// The resources of `parts` with their stream names (`workload/<uid>`, `service/<ns>/<name>`,
/// `authz/<ns>/<name>`, `peerauth/<ns>/<name>`), as control names them.
pub fn values_of(parts: &mesh_api::SnapshotParts) -> impl Iterator<Item = (String, Value)> + '_ {
    let workloads = parts
        .workloads
        .iter()
        .map(|w| (format!("workload/{}", w.uid), Value::Workload(w.clone())));
    let services = parts.services.iter().map(|s| {
        (
            format!("service/{}/{}", s.namespace, s.name),
            Value::Service(s.clone()),
        )
    });
    let authz = parts.authorization_policies.iter().map(|p| {
        (
            format!("authz/{}/{}", p.namespace, p.name),
            Value::AuthorizationPolicy(p.clone()),
        )
    });
    let peer = parts.peer_authentications.iter().map(|p| {
        (
            format!("peerauth/{}/{}", p.namespace, p.name),
            Value::PeerAuthentication(p.clone()),
        )
    });
    workloads.chain(services).chain(authz).chain(peer)
}

/// Like [`values_of`], taking `parts` (no copy of the values).
pub fn into_values(parts: mesh_api::SnapshotParts) -> impl Iterator<Item = (String, Value)> {
    let workloads = parts
        .workloads
        .into_iter()
        .map(|w| (format!("workload/{}", w.uid), Value::Workload(w)));
    let services = parts.services.into_iter().map(|s| {
        (
            format!("service/{}/{}", s.namespace, s.name),
            Value::Service(s),
        )
    });
    let authz = parts.authorization_policies.into_iter().map(|p| {
        (
            format!("authz/{}/{}", p.namespace, p.name),
            Value::AuthorizationPolicy(p),
        )
    });
    let peer = parts.peer_authentications.into_iter().map(|p| {
        (
            format!("peerauth/{}/{}", p.namespace, p.name),
            Value::PeerAuthentication(p),
        )
    });
    workloads.chain(services).chain(authz).chain(peer)
}

/// Encodes a resource for the wire.
pub fn encode(name: &str, version: &str, value: &Value) -> pb::Resource {
    use pb::resource::Kind;
    let kind = match value {
        Value::Workload(w) => Kind::Workload(workload_to_pb(w)),
        Value::Service(s) => Kind::Service(service_to_pb(s)),
        // Serializing our own validated types to JSON cannot fail (string keys, no non-finite floats).
        Value::AuthorizationPolicy(p) => {
            Kind::AuthorizationPolicyJson(serde_json::to_string(p).unwrap_or_default())
        }
        Value::PeerAuthentication(p) => {
            Kind::PeerAuthenticationJson(serde_json::to_string(p).unwrap_or_default())
        }
        Value::L7Object(j) => Kind::L7ObjectJson(j.clone()),
    };
    pb::Resource {
        name: name.to_string(),
        version: version.to_string(),
        kind: Some(kind),
    }
}

/// Decodes a resource from the wire (field checks; cross-resource checks happen when the snapshot is built).
pub fn decode(r: &pb::Resource) -> Result<Value, ConvertError> {
    use pb::resource::Kind;
    let name = &r.name;
    let policy_err = |e: serde_json::Error| ConvertError::Policy {
        resource: name.clone(),
        message: e.to_string(),
    };
    Ok(
        match r
            .kind
            .as_ref()
            .ok_or_else(|| ConvertError::Empty(name.clone()))?
        {
            Kind::Workload(w) => Value::Workload(workload_from_pb(name, w)?),
            Kind::Service(s) => Value::Service(service_from_pb(name, s)?),
            Kind::AuthorizationPolicyJson(j) => {
                Value::AuthorizationPolicy(serde_json::from_str(j).map_err(policy_err)?)
            }
            Kind::PeerAuthenticationJson(j) => {
                Value::PeerAuthentication(serde_json::from_str(j).map_err(policy_err)?)
            }
            Kind::L7ObjectJson(j) => Value::L7Object(j.clone()),
        },
    )
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_from(resource: &str, b: &[u8]) -> Result<IpAddr, ConvertError> {
    let err = || ConvertError::Address {
        resource: resource.to_string(),
        len: b.len(),
    };
    match b.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(b).map_err(|_| err())?)),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(b).map_err(|_| err())?)),
        _ => Err(err()),
    }
}

fn port_from(resource: &str, p: u32) -> Result<u16, ConvertError> {
    u16::try_from(p).map_err(|_| ConvertError::Port {
        resource: resource.to_string(),
        port: p,
    })
}

fn waypoint_to_pb(w: &WaypointRef) -> pb::WaypointRef {
    pb::WaypointRef {
        address: ip_bytes(&w.address),
        port: u32::from(w.port),
    }
}

fn waypoint_from_pb(resource: &str, w: &pb::WaypointRef) -> Result<WaypointRef, ConvertError> {
    Ok(WaypointRef {
        address: ip_from(resource, &w.address)?,
        port: port_from(resource, w.port)?,
    })
}

fn workload_to_pb(w: &Workload) -> pb::Workload {
    pb::Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        node: w.node.clone(),
        addresses: w.addresses.iter().map(ip_bytes).collect(),
        labels: w.labels.clone().into_iter().collect(),
        hbone: w.protocol == Protocol::Hbone,
        waypoint: w.waypoint.as_ref().map(waypoint_to_pb),
        trust_domain: w.trust_domain.clone(),
    }
}

fn workload_from_pb(resource: &str, w: &pb::Workload) -> Result<Workload, ConvertError> {
    Ok(Workload {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        node: w.node.clone(),
        addresses: w
            .addresses
            .iter()
            .map(|a| ip_from(resource, a))
            .collect::<Result<_, _>>()?,
        labels: w.labels.clone().into_iter().collect(),
        protocol: if w.hbone {
            Protocol::Hbone
        } else {
            Protocol::Tcp
        },
        waypoint: w
            .waypoint
            .as_ref()
            .map(|x| waypoint_from_pb(resource, x))
            .transpose()?,
        trust_domain: w.trust_domain.clone(),
    })
}

fn service_to_pb(s: &Service) -> pb::Service {
    pb::Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        hostname: s.hostname.clone(),
        vips: s.vips.iter().map(ip_bytes).collect(),
        ports: s
            .ports
            .iter()
            .map(|p| pb::ServicePort {
                port: u32::from(p.port),
                target_port: u32::from(p.target_port),
                app_protocol: p.app_protocol.clone().unwrap_or_default(),
            })
            .collect(),
        endpoints: s.endpoints.clone(),
        waypoint: s.waypoint.as_ref().map(waypoint_to_pb),
    }
}

fn service_from_pb(resource: &str, s: &pb::Service) -> Result<Service, ConvertError> {
    Ok(Service {
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        hostname: s.hostname.clone(),
        vips: s
            .vips
            .iter()
            .map(|a| ip_from(resource, a))
            .collect::<Result<_, _>>()?,
        ports: s
            .ports
            .iter()
            .map(|p| {
                Ok(ServicePort {
                    port: port_from(resource, p.port)?,
                    target_port: port_from(resource, p.target_port)?,
                    app_protocol: Some(p.app_protocol.clone()).filter(|a| !a.is_empty()),
                })
            })
            .collect::<Result<_, ConvertError>>()?,
        endpoints: s.endpoints.clone(),
        waypoint: s
            .waypoint
            .as_ref()
            .map(|x| waypoint_from_pb(resource, x))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let parts = mesh_api::file::parse(
            "workloads:\n  - {name: a, namespace: n, serviceAccount: s, node: x, addresses: [10.0.0.1, 'fd00::1'], \
             labels: {app: a}, waypoint: {address: 10.0.0.9}}\n  - {name: w, addresses: [10.0.0.9]}\n\
             services:\n  - {name: s, namespace: n, vips: [10.96.0.1], ports: [{port: 80, targetPort: 8080, \
             appProtocol: http}], selector: {app: a}}\n\
             authorizationPolicies:\n  - {name: p, namespace: n, action: DENY, rules: [{from: [{source: \
             {principals: ['*']}}]}]}\n\
             peerAuthentications:\n  - {name: pa, namespace: n, mtls: {mode: STRICT}}\n",
        )
        .expect("valid file");
        let p = parts.parts();
        assert_eq!(
            into_values(p.clone()).collect::<Vec<_>>(),
            values_of(p).collect::<Vec<_>>()
        );
        let values = p
            .workloads
            .iter()
            .cloned()
            .map(Value::Workload)
            .chain(p.services.iter().cloned().map(Value::Service))
            .chain(
                p.authorization_policies
                    .iter()
                    .cloned()
                    .map(Value::AuthorizationPolicy),
            )
            .chain(
                p.peer_authentications
                    .iter()
                    .cloned()
                    .map(Value::PeerAuthentication),
            );
        for v in values {
            let wire = encode("r", "7", &v);
            assert_eq!(wire.version, "7");
            assert_eq!(decode(&wire).expect("decodes"), v);
        }
    }

    #[test]
    fn bad_wire_values_are_errors() {
        let mut wire = encode("workload/x", "1", &Value::Workload(Workload::default()));
        if let Some(pb::resource::Kind::Workload(w)) = &mut wire.kind {
            w.addresses.push(vec![1, 2, 3]);
        }
        assert!(
            decode(&wire)
                .expect_err("bad address")
                .to_string()
                .contains("3 bytes")
        );
        let empty = pb::Resource {
            name: "x".into(),
            version: "1".into(),
            kind: None,
        };
        assert!(decode(&empty).is_err());
        let bad = pb::Resource {
            name: "authz/n/p".into(),
            version: "1".into(),
            kind: Some(pb::resource::Kind::AuthorizationPolicyJson(
                "{\"name\":1}".into(),
            )),
        };
        assert!(
            decode(&bad)
                .expect_err("bad policy")
                .to_string()
                .contains("authz/n/p")
        );
    }
}
