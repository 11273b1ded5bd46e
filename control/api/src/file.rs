//! The local config file ztunnel reads with `--config FILE` until control streams config.
//!
//! YAML, camelCase, unknown fields rejected; see `control/api/README.md` for a full example.
//! [`parse`] yields a whole [`ConfigSnapshot`] or an error naming the offending field (nothing
//! is half-applied). Defaults: `uid` = `<namespace>/<name>`, `namespace` = `default`,
//! `serviceAccount` = `default`, `protocol` = `HBONE`, waypoint `port` = 15008, service
//! `targetPort` = `port`, `rootNamespace` = `istio-system`. A service's endpoints are the
//! workloads of its namespace whose labels match its `selector`, plus any uids listed in
//! `endpoints`. `authorizationPolicies` and `peerAuthentications` have the Istio `spec` fields
//! next to `name` and `namespace`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::authz::{AuthorizationPolicyResource, Policy, PolicyError};
use crate::model::{
    ConfigSnapshot, DEFAULT_TRUST_DOMAIN, FieldError, Protocol, Service, ServicePort,
    SnapshotError, SnapshotParts, WaypointRef, Workload, names, service_hostname,
};
use crate::peer_auth::{PeerAuthError, PeerAuthentication, PeerAuthenticationResource};

/// Namespace of entries that do not name one (Kubernetes' default).
const DEFAULT_NAMESPACE: &str = "default";
/// Service account of workloads that do not name one (Kubernetes' default).
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Why a config file was rejected. Nothing of it is applied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not YAML, or not the shape of a config file (unknown field, wrong type, bad address).
    #[error("config is not a valid mesh config file: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    /// An AuthorizationPolicy is invalid.
    #[error("authorizationPolicies[{index}] ({name}): {source}")]
    Policy {
        /// Position in `authorizationPolicies`.
        index: usize,
        /// `namespace/name` of the policy.
        name: String,
        /// What is wrong.
        source: PolicyError,
    },
    /// A PeerAuthentication is invalid.
    #[error("peerAuthentications[{index}] ({name}): {source}")]
    PeerAuthentication {
        /// Position in `peerAuthentications`.
        index: usize,
        /// `namespace/name` of the policy.
        name: String,
        /// What is wrong.
        source: PeerAuthError,
    },
    /// The entries are individually fine but inconsistent (duplicates, unknown endpoints) or a
    /// workload/service field is invalid.
    #[error("config rejected: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Namespace whose policies apply mesh-wide (default `istio-system`).
    #[serde(default)]
    pub root_namespace: Option<String>,
    /// Workloads (pods).
    #[serde(default)]
    pub workloads: Vec<FileWorkload>,
    /// Services.
    #[serde(default)]
    pub services: Vec<FileService>,
    /// Istio AuthorizationPolicies (name, namespace and spec fields).
    #[serde(default)]
    pub authorization_policies: Vec<AuthorizationPolicyResource>,
    /// Istio PeerAuthentications (name, namespace and spec fields).
    #[serde(default)]
    pub peer_authentications: Vec<PeerAuthenticationResource>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

fn default_service_account() -> String {
    DEFAULT_SERVICE_ACCOUNT.to_string()
}

fn default_trust_domain() -> String {
    DEFAULT_TRUST_DOMAIN.to_string()
}

/// A workload entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileWorkload {
    /// Unique id; default `<namespace>/<name>`.
    #[serde(default)]
    pub uid: Option<String>,
    /// Pod name.
    pub name: String,
    /// Pod namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Service account (default `default`).
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// Node the pod runs on.
    #[serde(default)]
    pub node: String,
    /// Pod IPs.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `HBONE` (enrolled, default) or `TCP` (not in the mesh).
    #[serde(default)]
    pub protocol: Protocol,
    /// Waypoint for traffic to this workload.
    #[serde(default)]
    pub waypoint: Option<WaypointRef>,
    /// SPIFFE trust domain (default `cluster.local`).
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
}

/// A service entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileService {
    /// Service name.
    pub name: String,
    /// Service namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Cluster IPs.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<FilePort>,
    /// Label selector (Kubernetes Service style, a flat map); empty or absent selects nothing.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Extra endpoint workload uids.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Waypoint for traffic to this service.
    #[serde(default)]
    pub waypoint: Option<WaypointRef>,
}

/// A service port entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilePort {
    /// Port on the VIP.
    pub port: u16,
    /// Port on the endpoints (default: `port`).
    #[serde(default)]
    pub target_port: Option<u16>,
    /// Application protocol.
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// Parses and validates a config file's text.
pub fn parse(text: &str) -> Result<ConfigSnapshot, FileError> {
    let file: ConfigFile = serde_yaml_ng::from_str(text)?;
    file.into_snapshot()
}

/// Reads and parses the config file at `path`.
pub fn load(path: &Path) -> Result<ConfigSnapshot, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

impl ConfigFile {
    /// Validates the file's entries into a snapshot.
    pub fn into_snapshot(self) -> Result<ConfigSnapshot, FileError> {
        let workloads: Vec<Workload> = self.workloads.into_iter().map(workload).collect();
        let services = self
            .services
            .into_iter()
            .enumerate()
            .map(|(i, s)| service(s, &workloads).map_err(|e| e.under(&format!("services[{i}]"))))
            .collect::<Result<_, _>>()
            .map_err(SnapshotError::from)?;
        let authorization_policies = self
            .authorization_policies
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                let name = format!("{}/{}", r.namespace, r.name);
                Policy::try_from(r).map_err(|source| FileError::Policy {
                    index,
                    name,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let peer_authentications = self
            .peer_authentications
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                let name = format!("{}/{}", r.namespace, r.name);
                PeerAuthentication::try_from(r).map_err(|source| FileError::PeerAuthentication {
                    index,
                    name,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let parts = SnapshotParts {
            root_namespace: self.root_namespace.unwrap_or_default(),
            workloads,
            services,
            authorization_policies,
            peer_authentications,
        };
        Ok(ConfigSnapshot::new(parts)?)
    }
}

fn workload(w: FileWorkload) -> Workload {
    Workload {
        uid: w
            .uid
            .unwrap_or_else(|| format!("{}/{}", w.namespace, w.name)),
        name: w.name,
        namespace: w.namespace,
        service_account: w.service_account,
        node: w.node,
        addresses: w.addresses,
        labels: w.labels.into(),
        protocol: w.protocol,
        waypoint: w.waypoint,
        trust_domain: w.trust_domain,
    }
}

fn service(s: FileService, workloads: &[Workload]) -> Result<Service, FieldError> {
    names::validate_labels(&s.selector).map_err(|e| e.under("selector"))?;
    let mut endpoints: Vec<String> = Vec::new();
    if !s.selector.is_empty() {
        let selected = workloads.iter().filter(|w| {
            w.namespace == s.namespace && s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        });
        endpoints.extend(selected.map(|w| w.uid.clone()));
    }
    for uid in s.endpoints {
        if !endpoints.contains(&uid) {
            endpoints.push(uid);
        }
    }
    Ok(Service {
        hostname: service_hostname(&s.name, &s.namespace),
        name: s.name,
        namespace: s.namespace,
        vips: s.vips,
        ports: s
            .ports
            .into_iter()
            .map(|p| ServicePort {
                port: p.port,
                target_port: p.target_port.unwrap_or(p.port),
                app_protocol: p.app_protocol,
            })
            .collect(),
        endpoints,
        waypoint: s.waypoint,
    })
}

#[cfg(test)]
#[path = "file/tests.rs"]
mod tests;
