//! Istio's standard TCP metric labels, as ztunnel exposes them (names, order and values match
//! Istio's ztunnel so Prometheus dashboards and Kiali work unchanged).

use std::fmt::Write;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Value written for a label whose value is not known, as Istio does.
pub const UNKNOWN: &str = "unknown";

/// A label value that is either known (a cheaply cloned shared string) or `unknown`.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct LabelValue(Option<Arc<str>>);

impl LabelValue {
    /// The value, or `None` when it is unknown.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0.as_deref() {
            Some(v) if !v.is_empty() => encoder.write_str(v),
            _ => encoder.write_str(UNKNOWN),
        }
    }
}

impl From<&str> for LabelValue {
    fn from(v: &str) -> Self {
        Self(Some(Arc::from(v)))
    }
}

impl From<String> for LabelValue {
    fn from(v: String) -> Self {
        Self(Some(Arc::from(v)))
    }
}

impl From<Arc<str>> for LabelValue {
    fn from(v: Arc<str>) -> Self {
        Self(Some(v))
    }
}

impl<T: Into<LabelValue>> From<Option<T>> for LabelValue {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or_default()
    }
}

/// Which side of the connection reports: the client's ztunnel (`source`, outbound) or the
/// server's (`destination`, inbound).
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum Reporter {
    /// Outbound: reported by the client's proxy.
    #[default]
    Source,
    /// Inbound: reported by the server's proxy.
    Destination,
}

impl EncodeLabelValue for Reporter {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Source => "source",
            Self::Destination => "destination",
        })
    }
}

/// `request_protocol`: always `tcp` for ztunnel.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum RequestProtocol {
    /// Plain TCP.
    #[default]
    Tcp,
}

impl EncodeLabelValue for RequestProtocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str("tcp")
    }
}

/// `response_flags`, with Istio ztunnel's values.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum ResponseFlags {
    /// Nothing to report (`-`).
    #[default]
    None,
    /// Denied by an authorization policy (`DENY`).
    AuthorizationPolicyDenied,
    /// No upstream connection could be made (`CONNECT`).
    ConnectionFailure,
}

impl EncodeLabelValue for ResponseFlags {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::None => "-",
            Self::AuthorizationPolicyDenied => "DENY",
            Self::ConnectionFailure => "CONNECT",
        })
    }
}

/// `connection_security_policy`.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
pub enum SecurityPolicy {
    /// Not determined (Istio ztunnel's default).
    #[default]
    Unknown,
    /// Carried over mutual TLS (HBONE).
    MutualTls,
    /// Plaintext (e.g. from a client outside the mesh).
    None,
}

impl EncodeLabelValue for SecurityPolicy {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Unknown => UNKNOWN,
            Self::MutualTls => "mutual_tls",
            Self::None => "none",
        })
    }
}

/// What is known about one end of a connection, for its `source_*` or `destination_*` labels.
#[derive(Clone, Debug, Default)]
pub struct PeerLabels {
    /// Workload name (e.g. the Deployment name).
    pub workload: LabelValue,
    /// `service.istio.io/canonical-name` (or `app`); also used as `*_app`.
    pub canonical_service: LabelValue,
    /// `service.istio.io/canonical-revision` (or `version`); also used as `*_version`.
    pub canonical_revision: LabelValue,
    /// Namespace of the workload.
    pub namespace: LabelValue,
    /// SPIFFE identity, only when it was verified (mTLS); leave unknown otherwise.
    pub principal: LabelValue,
    /// Cluster id.
    pub cluster: LabelValue,
}

/// The full label set of ztunnel's TCP metrics. Build one per connection with the `with_*`
/// methods and hand it to [`super::Metrics::connection`].
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabels {
    /// `reporter`.
    pub reporter: Reporter,
    /// `source_workload`.
    pub source_workload: LabelValue,
    /// `source_canonical_service`.
    pub source_canonical_service: LabelValue,
    /// `source_canonical_revision`.
    pub source_canonical_revision: LabelValue,
    /// `source_workload_namespace`.
    pub source_workload_namespace: LabelValue,
    /// `source_principal`.
    pub source_principal: LabelValue,
    /// `source_app`.
    pub source_app: LabelValue,
    /// `source_version`.
    pub source_version: LabelValue,
    /// `source_cluster`.
    pub source_cluster: LabelValue,
    /// `destination_service` (the service's hostname, e.g. `reviews.bookinfo.svc.cluster.local`).
    pub destination_service: LabelValue,
    /// `destination_service_namespace`.
    pub destination_service_namespace: LabelValue,
    /// `destination_service_name`.
    pub destination_service_name: LabelValue,
    /// `destination_workload`.
    pub destination_workload: LabelValue,
    /// `destination_canonical_service`.
    pub destination_canonical_service: LabelValue,
    /// `destination_canonical_revision`.
    pub destination_canonical_revision: LabelValue,
    /// `destination_workload_namespace`.
    pub destination_workload_namespace: LabelValue,
    /// `destination_principal`.
    pub destination_principal: LabelValue,
    /// `destination_app`.
    pub destination_app: LabelValue,
    /// `destination_version`.
    pub destination_version: LabelValue,
    /// `destination_cluster`.
    pub destination_cluster: LabelValue,
    /// `request_protocol`.
    pub request_protocol: RequestProtocol,
    /// `response_flags`.
    pub response_flags: ResponseFlags,
    /// `connection_security_policy`.
    pub connection_security_policy: SecurityPolicy,
}

impl TrafficLabels {
    /// Every label unknown except `reporter`.
    pub fn new(reporter: Reporter) -> Self {
        Self {
            reporter,
            ..Self::default()
        }
    }

    /// Fills the `source_*` labels.
    pub fn with_source(mut self, p: &PeerLabels) -> Self {
        self.source_workload = p.workload.clone();
        self.source_canonical_service = p.canonical_service.clone();
        self.source_canonical_revision = p.canonical_revision.clone();
        self.source_workload_namespace = p.namespace.clone();
        self.source_principal = p.principal.clone();
        self.source_app = p.canonical_service.clone();
        self.source_version = p.canonical_revision.clone();
        self.source_cluster = p.cluster.clone();
        self
    }

    /// Fills the `destination_*` workload labels.
    pub fn with_destination(mut self, p: &PeerLabels) -> Self {
        self.destination_workload = p.workload.clone();
        self.destination_canonical_service = p.canonical_service.clone();
        self.destination_canonical_revision = p.canonical_revision.clone();
        self.destination_workload_namespace = p.namespace.clone();
        self.destination_principal = p.principal.clone();
        self.destination_app = p.canonical_service.clone();
        self.destination_version = p.canonical_revision.clone();
        self.destination_cluster = p.cluster.clone();
        self
    }

    /// Fills the `destination_service*` labels: hostname, name and namespace of the service.
    pub fn with_destination_service(
        mut self,
        hostname: impl Into<LabelValue>,
        name: impl Into<LabelValue>,
        namespace: impl Into<LabelValue>,
    ) -> Self {
        self.destination_service = hostname.into();
        self.destination_service_name = name.into();
        self.destination_service_namespace = namespace.into();
        self
    }

    /// Sets `connection_security_policy`.
    pub fn with_security_policy(mut self, policy: SecurityPolicy) -> Self {
        self.connection_security_policy = policy;
        self
    }
}
