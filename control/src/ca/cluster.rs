//! The CA root in a cluster: a user-provided `cacerts` directory (the Istio Secret mounted) wins; otherwise the
//! root lives in the Secret [`ROOT_SECRET`] of control's namespace, created at the first start (when two replicas
//! race, the second reads the first's). The root is published in the ConfigMap [`ROOT_CONFIGMAP`] for the
//! ztunnels (`--control-ca`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mesh_identity::CertificateAuthority;

use super::{CACERTS_FILES, CaError, SELF_SIGNED_FILES};

/// Secret holding a root control generated (`root-cert.pem`, `root-key.pem`).
pub const ROOT_SECRET: &str = "mesh-ca";
/// ConfigMap publishing the mesh root (`root-cert.pem`).
pub const ROOT_CONFIGMAP: &str = "mesh-root-cert";

/// Errors of the in-cluster CA.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCaError {
    /// The CA files or Secret content are invalid.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The API server refused or failed.
    #[error(
        "CA Secret/ConfigMap in namespace {0}: {1}; check control's RBAC (secrets get/create, configmaps patch)"
    )]
    Api(String, Box<kube::Error>),
    /// The Secret lacks a key.
    #[error("Secret {0}/{ROOT_SECRET} has no {1}; delete it to let control generate a new root")]
    Incomplete(String, &'static str),
}

/// Loads the CA: `cacerts` from `dir` when present, else the root Secret, created when missing.
pub async fn load_or_create(
    client: &kube::Client,
    namespace: &str,
    dir: &Path,
    trust_domain: &str,
) -> Result<CertificateAuthority, ClusterCaError> {
    if dir.join(CACERTS_FILES[0]).exists() {
        return Ok(super::load_or_create(dir, trust_domain)?);
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let err = |e| ClusterCaError::Api(namespace.to_string(), Box::new(e));
    let secret = match api.get_opt(ROOT_SECRET).await.map_err(err)? {
        Some(s) => s,
        None => {
            let ca = CertificateAuthority::generate(trust_domain)
                .map_err(|e| CaError::Identity(ROOT_SECRET.into(), Box::new(e)))?;
            let data = BTreeMap::from([
                (
                    SELF_SIGNED_FILES[0].to_string(),
                    ByteString(ca.cert_pem().into_bytes()),
                ),
                (
                    SELF_SIGNED_FILES[1].to_string(),
                    ByteString(ca.key_pem().into_bytes()),
                ),
            ]);
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(ROOT_SECRET.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                data: Some(data),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(
                        namespace,
                        secret = ROOT_SECRET,
                        "generated a new mesh root CA"
                    );
                    return Ok(ca);
                }
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    api.get(ROOT_SECRET).await.map_err(err)?
                }
                Err(e) => return Err(err(e)),
            }
        }
    };
    let data = secret.data.unwrap_or_default();
    let get = |k: &'static str| {
        data.get(k)
            .map(|b| b.0.clone())
            .ok_or_else(|| ClusterCaError::Incomplete(namespace.to_string(), k))
    };
    let (cert, key) = (get(SELF_SIGNED_FILES[0])?, get(SELF_SIGNED_FILES[1])?);
    Ok(CertificateAuthority::from_pem(&cert, &key, trust_domain)
        .map_err(|e| CaError::Identity(ROOT_SECRET.into(), Box::new(e)))?)
}

/// The ConfigMap [`ROOT_CONFIGMAP`] of `namespace` holding the mesh roots `root_pem` as `root-cert.pem`.
pub fn root_config_map(namespace: &str, root_pem: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CONFIGMAP.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            SELF_SIGNED_FILES[0].to_string(),
            root_pem,
        )])),
        ..Default::default()
    }
}

/// Publishes the roots of `ca` in the ConfigMap [`ROOT_CONFIGMAP`] (server-side apply).
pub async fn publish_root(
    client: &kube::Client,
    namespace: &str,
    ca: &CertificateAuthority,
) -> Result<(), ClusterCaError> {
    let cm = root_config_map(namespace, ca.bundle().to_pem());
    let mut body = serde_json::to_value(&cm).unwrap_or_default();
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            ROOT_CONFIGMAP,
            &PatchParams::apply("mesh-control").force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|e| ClusterCaError::Api(namespace.to_string(), Box::new(e)))?;
    Ok(())
}
