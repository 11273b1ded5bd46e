//! What a waypoint deployed in Kubernetes needs to reach control, as the ztunnel DaemonSet has it: control's
//! address, a projected service-account token for control's token review (audience `istio-ca`), and the mesh
//! root it verifies control with. A pod can only mount ConfigMaps of its own namespace, so the deployer publishes
//! the root as the ConfigMap [`ROOT_CONFIGMAP`] in each waypoint's namespace (as Istio publishes
//! `istio-ca-root-cert` in every namespace). That ConfigMap is shared by the namespace's waypoints and carries no
//! owner: deleting one Gateway must not take it from the others.

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};

use crate::auth::token_review::AUDIENCE;
use crate::ca::SELF_SIGNED_FILES;
use crate::ca::cluster::{ROOT_CONFIGMAP, root_config_map};

/// Where the token is mounted in the waypoint container.
pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// The token's file name in [`TOKEN_DIR`].
pub const TOKEN_FILE: &str = "istio-token";
/// Where the mesh root is mounted in the waypoint container.
pub const ROOT_DIR: &str = "/var/run/secrets/mesh";
/// Lifetime of the projected token (the kubelet renews it at 80 %).
pub const TOKEN_LIFETIME_SECS: i64 = 43_200;

const TOKEN_VOLUME: &str = "istio-token";
const ROOT_VOLUME: &str = "mesh-root";

/// How deployed waypoints reach control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAccess {
    /// `host:port` of control's config and CA service, e.g. `mesh-control.istio-system.svc:15012`.
    pub address: String,
    /// The mesh roots (PEM) the waypoint verifies control with.
    pub root_pem: String,
}

impl ControlAccess {
    /// The waypoint's command-line arguments for control, its token and the root.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--control={}", self.address),
            format!("--token-file={TOKEN_DIR}/{TOKEN_FILE}"),
            format!("--control-ca={ROOT_DIR}/{}", SELF_SIGNED_FILES[0]),
        ]
    }

    /// The pod's volumes: the projected token and the root ConfigMap.
    pub fn volumes(&self) -> Vec<Volume> {
        vec![
            Volume {
                name: TOKEN_VOLUME.into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(AUDIENCE.into()),
                            expiration_seconds: Some(TOKEN_LIFETIME_SECS),
                            path: TOKEN_FILE.into(),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: ROOT_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: ROOT_CONFIGMAP.into(),
                    optional: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]
    }

    /// The container's mounts of [`Self::volumes`].
    pub fn mounts(&self) -> Vec<VolumeMount> {
        [(TOKEN_VOLUME, TOKEN_DIR), (ROOT_VOLUME, ROOT_DIR)]
            .map(|(name, path)| VolumeMount {
                name: name.into(),
                mount_path: path.into(),
                read_only: Some(true),
                ..Default::default()
            })
            .into()
    }

    /// The root ConfigMap to publish in `namespace`.
    pub fn root_config_map(&self, namespace: &str) -> ConfigMap {
        root_config_map(namespace, self.root_pem.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::gateway;
    use super::super::{DeployerOptions, waypoint_objects};
    use super::*;

    #[test]
    fn a_waypoint_pod_gets_control_address_token_and_root_where_its_args_say() {
        let opts = DeployerOptions {
            args: vec!["--workers=2".into()],
            control: Some(ControlAccess {
                address: "mesh-control.istio-system.svc:15012".into(),
                root_pem: "PEM".into(),
            }),
            ..DeployerOptions::default()
        };
        let o = waypoint_objects(&gateway(), &opts);
        let pod = o.deployment.spec.expect("spec").template.spec.expect("pod");
        let c = &pod.containers[0];
        let args = c.args.clone().expect("args");
        assert_eq!(
            args,
            [
                "--control=mesh-control.istio-system.svc:15012",
                "--token-file=/var/run/secrets/tokens/istio-token",
                "--control-ca=/var/run/secrets/mesh/root-cert.pem",
                "--workers=2",
            ]
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let volumes = pod.volumes.expect("volumes");
        let arg = |flag: &str| {
            args.iter()
                .find_map(|a| a.strip_prefix(flag))
                .expect("flag")
                .to_string()
        };
        // Each file an argument names is in a mounted volume that provides it.
        let provides = |file: &str| -> &Volume {
            let m = c
                .volume_mounts
                .iter()
                .flatten()
                .find(|m| file.starts_with(&format!("{}/", m.mount_path)))
                .unwrap_or_else(|| panic!("no mount holds {file}"));
            assert_eq!(m.read_only, Some(true));
            volumes
                .iter()
                .find(|v| v.name == m.name)
                .unwrap_or_else(|| panic!("mount {} has no volume", m.name))
        };
        let token = arg("--token-file=");
        let projection = provides(&token)
            .projected
            .as_ref()
            .expect("projected")
            .sources
            .as_ref()
            .expect("sources")[0]
            .service_account_token
            .clone()
            .expect("token projection");
        assert_eq!(
            projection.audience.as_deref(),
            Some("istio-ca"),
            "control's token review audience"
        );
        assert!(token.ends_with(&format!("/{}", projection.path)));
        let root_file = arg("--control-ca=");
        let cm_name = provides(&root_file)
            .config_map
            .as_ref()
            .expect("configMap")
            .name
            .clone();
        let root = o.root_cert.expect("root ConfigMap");
        assert_eq!(root.metadata.name.as_deref(), Some(cm_name.as_str()));
        assert_eq!(
            root.metadata.namespace.as_deref(),
            Some("shop"),
            "the pod's own namespace"
        );
        let key = root_file.rsplit('/').next().expect("file name");
        assert_eq!(root.data.expect("data")[key], "PEM");
    }

    #[test]
    fn without_control_access_nothing_is_mounted() {
        let o = waypoint_objects(&gateway(), &DeployerOptions::default());
        let pod = o.deployment.spec.expect("spec").template.spec.expect("pod");
        assert!(pod.volumes.is_none() && pod.containers[0].volume_mounts.is_none());
        assert!(pod.containers[0].args.is_none());
        assert!(o.root_cert.is_none());
    }
}
