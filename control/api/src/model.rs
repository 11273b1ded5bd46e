//! The proxy config model: what control streams to the ztunnels (and what the local config file
//! describes), validated and indexed in an immutable [`ConfigSnapshot`].
//!
//! Every type serializes to JSON with serde (ztunnel's `/config_dump` prints it).

mod labels;
pub mod names;
mod selector;
mod service;
mod snapshot;
mod workload;

pub use labels::{LabelLookup, Labels};
pub use selector::WorkloadSelector;
pub use service::{Service, ServicePort};
pub use snapshot::{ConfigSnapshot, SnapshotError, SnapshotParts};
pub use workload::{Protocol, WaypointRef, Workload};

pub use crate::peer_auth::MtlsMode;

/// Trust domain of workloads that do not name one (Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Namespace whose policies apply mesh-wide when none is configured (Istio's default).
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// DNS domain of the cluster, used to build service hostnames `<name>.<ns>.svc.<domain>`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Port a waypoint accepts HBONE on when its reference does not name one (DESIGN.md 3).
pub const DEFAULT_WAYPOINT_PORT: u16 = 15008;

/// A validation failure, located by the path of the offending field
/// (e.g. `workloads[2].addresses[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, in the camelCase names of the config file.
    pub field: String,
    /// What is wrong and what a valid value looks like.
    pub message: String,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, with its field path put under `prefix` (`prefix.field`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = join_path(prefix, &self.field);
        self
    }
}

/// `prefix.field`, or `prefix[0]` when `field` starts with an index, or either alone when the
/// other is empty.
pub(crate) fn join_path(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (_, true) => prefix.to_string(),
        _ if field.starts_with('[') => format!("{prefix}{field}"),
        _ => format!("{prefix}.{field}"),
    }
}

/// Hostname of a Kubernetes service: `<name>.<namespace>.svc.cluster.local`.
pub fn service_hostname(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}
