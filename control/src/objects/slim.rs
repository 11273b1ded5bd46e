//! Objects as the index keeps them: only the fields translation (and the deployer) read. A Kubernetes object
//! carries much more (managed fields, the last applied configuration, container specs, statuses of every
//! container) that control never looks at; keeping it would cost several KB per pod for nothing (10,000 pods:
//! ~58 MiB as parsed `k8s-openapi` values, ~4x that of their JSON in a real cluster). Parsing still checks the
//! whole object against its kind first, so an invalid file is rejected as before.
//!
//! Fields kept:
//! - every kind: `metadata.name`, `namespace`, `uid`, `labels`, `deletionTimestamp`, `generation`;
//! - Pod: the annotation `ambient.istio.io/redirection`; `spec.nodeName`, `serviceAccountName`, `hostNetwork`,
//!   the containers that declare ports (name and ports: name and number only); `status.phase`, the `Ready`
//!   condition (type and status), `podIP`, `podIPs`;
//! - Service: `spec.type`, `selector`, `publishNotReadyAddresses`, `ports` (protocol, port, targetPort,
//!   appProtocol), `clusterIP`, `clusterIPs`;
//! - EndpointSlice: `endpoints` (`conditions.ready`, `targetRef` kind and name);
//! - Namespace, ServiceAccount: metadata only.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, ObjectReference, Pod, PodCondition, PodIP, PodSpec,
    PodStatus, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::translate::ANNOTATION_REDIRECTION;

/// A collected vector without spare capacity: collecting from `into_iter()` of a vector of the same element type
/// reuses its allocation, so a filtered-out container would otherwise keep its ~2 KB.
trait Fitted {
    fn fitted(self) -> Self;
}

impl<T> Fitted for Vec<T> {
    fn fitted(mut self) -> Self {
        self.shrink_to_fit();
        self
    }
}

/// The metadata fields the index reads, with the annotations named in `annotations`.
fn meta(m: ObjectMeta, annotations: &[&str]) -> ObjectMeta {
    let annotations = m
        .annotations
        .map(|a| {
            a.into_iter()
                .filter(|(k, _)| annotations.contains(&k.as_str()))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .filter(|a| !a.is_empty());
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        labels: m.labels,
        annotations,
        deletion_timestamp: m.deletion_timestamp,
        generation: m.generation,
        ..Default::default()
    }
}

/// A pod with only what translation reads.
pub fn pod(p: Pod) -> Pod {
    let spec = p.spec.map(|s| PodSpec {
        node_name: s.node_name,
        service_account_name: s.service_account_name,
        host_network: s.host_network,
        containers: s
            .containers
            .into_iter()
            .filter(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
            .map(|c| Container {
                name: c.name,
                ports: c.ports.map(|ports| {
                    ports
                        .into_iter()
                        .map(|p| ContainerPort {
                            name: p.name,
                            container_port: p.container_port,
                            ..Default::default()
                        })
                        .collect::<Vec<_>>()
                        .fitted()
                }),
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .fitted(),
        ..Default::default()
    });
    let status = p.status.map(|s| PodStatus {
        phase: s.phase,
        conditions: s.conditions.map(|c| {
            c.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .fitted()
        }),
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips.map(|ips| {
            ips.into_iter()
                .map(|ip| PodIP { ip: ip.ip })
                .collect::<Vec<_>>()
                .fitted()
        }),
        ..Default::default()
    });
    Pod {
        metadata: meta(p.metadata, &[ANNOTATION_REDIRECTION]),
        spec,
        status,
    }
}

/// A service with only what translation reads.
pub fn service(s: Service) -> Service {
    let spec = s.spec.map(|s| ServiceSpec {
        type_: s.type_,
        selector: s.selector,
        publish_not_ready_addresses: s.publish_not_ready_addresses,
        ports: s.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    protocol: p.protocol,
                    port: p.port,
                    target_port: p.target_port,
                    app_protocol: p.app_protocol,
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .fitted()
        }),
        cluster_ip: s.cluster_ip,
        cluster_ips: s.cluster_ips,
        ..Default::default()
    });
    Service {
        metadata: meta(s.metadata, &[]),
        spec,
        status: None,
    }
}

/// An EndpointSlice with only what translation reads.
pub fn endpoint_slice(s: EndpointSlice) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(s.metadata, &[]),
        address_type: s.address_type,
        endpoints: s
            .endpoints
            .into_iter()
            .map(|e| Endpoint {
                conditions: e.conditions.map(|c| EndpointConditions {
                    ready: c.ready,
                    ..Default::default()
                }),
                target_ref: e.target_ref.map(|t| ObjectReference {
                    kind: t.kind,
                    name: t.name,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .fitted(),
        ports: None,
    }
}

/// A namespace with its metadata only.
pub fn namespace(n: Namespace) -> Namespace {
    Namespace {
        metadata: meta(n.metadata, &[]),
        spec: None,
        status: None,
    }
}

/// A service account with its metadata only.
pub fn service_account(a: ServiceAccount) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(a.metadata, &[]),
        ..Default::default()
    }
}
