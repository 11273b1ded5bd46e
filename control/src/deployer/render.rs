//! The objects of one waypoint. Their pods carry `istio.io/dataplane-mode: none` (a waypoint is never captured
//! by ztunnel: it terminates HBONE itself) and the Gateway's name label, by which control finds them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::objects::Gateway;
use crate::translate::{LABEL_GATEWAY_NAME, WAYPOINT_CLASS, ns_name};

mod access;

pub use access::ControlAccess;

/// Label marking objects this controller manages (Istio's value).
pub const LABEL_MANAGED: &str = "gateway.istio.io/managed";
/// Value of [`LABEL_MANAGED`].
pub const MANAGED_BY: &str = "istio.io-mesh-controller";
/// Label naming the GatewayClass of generated objects.
pub const LABEL_GATEWAY_CLASS: &str = "gateway.networking.k8s.io/gateway-class-name";
/// Default waypoint image (override with `DeployerOptions::image`).
pub const DEFAULT_IMAGE: &str = "mesh/waypoint:latest";

/// How waypoints are deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployerOptions {
    /// Container image of the waypoint.
    pub image: String,
    /// Extra arguments of the waypoint container.
    pub args: Vec<String>,
    /// How the waypoints reach control (Kubernetes: always; `None` only renders a bare pod, for tests).
    pub control: Option<ControlAccess>,
}

impl Default for DeployerOptions {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_string(),
            args: Vec::new(),
            control: None,
        }
    }
}

/// The objects of one waypoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WaypointObjects {
    /// Its identity.
    pub service_account: ServiceAccount,
    /// Its pods.
    pub deployment: Deployment,
    /// Its address (HBONE on 15008).
    pub service: Service,
    /// The mesh root in its namespace, which its pods mount (with [`DeployerOptions::control`]).
    pub root_cert: Option<ConfigMap>,
}

/// The objects for waypoint Gateway `gw`.
pub fn waypoint_objects(gw: &Gateway, opts: &DeployerOptions) -> WaypointObjects {
    let (ns, name) = ns_name(&gw.metadata);
    let select = BTreeMap::from([(LABEL_GATEWAY_NAME.to_string(), name.to_string())]);
    let mut labels = select.clone();
    labels.insert(LABEL_MANAGED.into(), MANAGED_BY.into());
    labels.insert(LABEL_GATEWAY_CLASS.into(), WAYPOINT_CLASS.into());
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![OwnerReference {
            api_version: "gateway.networking.k8s.io/v1".into(),
            kind: "Gateway".into(),
            name: name.to_string(),
            uid: gw.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut pod_labels = labels;
    pod_labels.insert("istio.io/dataplane-mode".into(), "none".into());
    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let env = vec![
        EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(field("metadata.namespace")),
            ..Default::default()
        },
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(field("status.podIP")),
            ..Default::default()
        },
        EnvVar {
            name: "SERVICE_ACCOUNT".into(),
            value_from: Some(field("spec.serviceAccountName")),
            ..Default::default()
        },
        EnvVar {
            name: "GATEWAY_NAME".into(),
            value: Some(name.to_string()),
            ..Default::default()
        },
    ];
    let port = |name: &str, p: i32| ContainerPort {
        name: Some(name.into()),
        container_port: p,
        ..Default::default()
    };
    let access = opts.control.as_ref();
    let args: Vec<String> = access
        .map(ControlAccess::args)
        .unwrap_or_default()
        .into_iter()
        .chain(opts.args.iter().cloned())
        .collect();
    let container = Container {
        name: "waypoint".into(),
        image: Some(opts.image.clone()),
        args: (!args.is_empty()).then_some(args),
        env: Some(env),
        volume_mounts: access.map(ControlAccess::mounts),
        security_context: Some(restricted()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("64Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        }),
        ports: Some(vec![
            port("hbone", 15008),
            port("metrics", 15020),
            port("ready", 15021),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz/ready".into()),
                port: IntOrString::Int(15021),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(select.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.to_string()),
                    // The projected token is the only credential it needs.
                    automount_service_account_token: Some(false),
                    volumes: access.map(ControlAccess::volumes),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let hbone_port = gw
        .spec
        .listeners
        .iter()
        .find(|l| l.protocol == "HBONE")
        .map_or(15008, |l| i32::from(l.port));
    let service = Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            selector: Some(select),
            ports: Some(vec![ServicePort {
                name: Some("mesh".into()),
                port: hbone_port,
                target_port: Some(IntOrString::Int(15008)),
                app_protocol: Some("all".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    WaypointObjects {
        service_account: ServiceAccount {
            metadata: meta,
            ..Default::default()
        },
        deployment,
        service,
        root_cert: access.map(|a| a.root_config_map(ns)),
    }
}

/// The waypoint needs no privilege (no setns, marks or transparent sockets; ports above 1024; logs to
/// stdout): the Pod Security "restricted" profile, so namespaces that enforce it accept waypoints.
fn restricted() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(1337),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Object, parse_documents};

    /// A waypoint Gateway `shop/wp` (uid `u1`) with the HBONE listener.
    pub(super) fn gateway() -> Gateway {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop, uid: u1}\n\
                    spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n";
        match parse_documents(text).expect("gateway").remove(0) {
            Object::Gateway(g) => *g,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn objects_are_named_owned_labelled_and_never_captured() {
        let o = waypoint_objects(&gateway(), &DeployerOptions::default());
        for meta in [
            &o.service_account.metadata,
            &o.deployment.metadata,
            &o.service.metadata,
        ] {
            assert_eq!(
                (meta.name.as_deref(), meta.namespace.as_deref()),
                (Some("wp"), Some("shop"))
            );
            let owner = &meta.owner_references.as_ref().expect("owner")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                ("Gateway", "u1", Some(true))
            );
            assert_eq!(
                meta.labels.as_ref().expect("labels")[LABEL_GATEWAY_NAME],
                "wp"
            );
        }
        let spec = o.deployment.spec.expect("spec");
        let pod_labels = spec
            .template
            .metadata
            .expect("meta")
            .labels
            .expect("labels");
        assert_eq!(pod_labels["istio.io/dataplane-mode"], "none");
        assert_eq!(
            pod_labels[LABEL_GATEWAY_NAME], "wp",
            "control finds waypoint pods by this label"
        );
        let pod = spec.template.spec.expect("pod");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("wp"),
            "the waypoint's identity is its own SA"
        );
        assert_eq!(pod.containers[0].image.as_deref(), Some(DEFAULT_IMAGE));
        let sc = pod.containers[0]
            .security_context
            .clone()
            .expect("securityContext");
        assert_eq!(
            (sc.run_as_non_root, sc.allow_privilege_escalation),
            (Some(true), Some(false)),
            "Pod Security restricted"
        );
        assert_eq!(
            sc.capabilities.expect("caps").drop,
            Some(vec!["ALL".into()])
        );
        let svc = o.service.spec.expect("svc");
        let port = &svc.ports.expect("ports")[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (15008, Some(IntOrString::Int(15008)))
        );
    }
}
