//! Istio's standard request metrics as a waypoint reports them (DESIGN.md 6):
//! `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`,
//! `istio_response_bytes`, labelled with `reporter="waypoint"`, the peers, `response_code`,
//! `response_flags` and `grpc_response_status`; plus the TCP metrics of opaque tunnels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use ztunnel::metrics::LabelValue;

/// Istio's duration buckets (milliseconds).
const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Istio's size buckets (bytes).
const SIZE_BUCKETS: [f64; 8] = [
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];

/// Labels of the request metrics (Istio's names).
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Always `waypoint`.
    pub reporter: LabelValue,
    /// Client workload name.
    pub source_workload: LabelValue,
    /// Client workload namespace.
    pub source_workload_namespace: LabelValue,
    /// Client identity (`spiffe://...`).
    pub source_principal: LabelValue,
    /// Client canonical service.
    pub source_canonical_service: LabelValue,
    /// Server workload name.
    pub destination_workload: LabelValue,
    /// Server workload namespace.
    pub destination_workload_namespace: LabelValue,
    /// Server identity.
    pub destination_principal: LabelValue,
    /// Service FQDN.
    pub destination_service: LabelValue,
    /// Service name.
    pub destination_service_name: LabelValue,
    /// Service namespace.
    pub destination_service_namespace: LabelValue,
    /// `http` or `grpc`.
    pub request_protocol: LabelValue,
    /// HTTP status sent to the client.
    pub response_code: LabelValue,
    /// gRPC status, for gRPC calls.
    pub grpc_response_status: LabelValue,
    /// Envoy-style flags (`-`, `NR`, `UF`, `UT`, `FI`, `DI`, `URX`...).
    pub response_flags: LabelValue,
    /// Always `mutual_tls` (HBONE).
    pub connection_security_policy: LabelValue,
}

/// The waypoint's metrics. Share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
    request_bytes: Family<RequestLabels, Histogram>,
    response_bytes: Family<RequestLabels, Histogram>,
    tcp_opened: Family<RequestLabels, Counter>,
    tcp_closed: Family<RequestLabels, Counter>,
    tcp_sent: Family<RequestLabels, Counter>,
    tcp_received: Family<RequestLabels, Counter>,
}

/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Labels.
    pub labels: RequestLabels,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

impl Metrics {
    /// Registers every metric on `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            request_bytes: Family::new_with_constructor(|| Histogram::new(SIZE_BUCKETS)),
            response_bytes: Family::new_with_constructor(|| Histogram::new(SIZE_BUCKETS)),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
        };
        for (name, help, f) in [
            (
                "istio_tcp_connections_opened",
                "The total number of TCP connections opened",
                &m.tcp_opened,
            ),
            (
                "istio_tcp_connections_closed",
                "The total number of TCP connections closed",
                &m.tcp_closed,
            ),
            (
                "istio_tcp_sent_bytes",
                "Bytes sent back to the client on TCP connections",
                &m.tcp_sent,
            ),
            (
                "istio_tcp_received_bytes",
                "Bytes received from the client on TCP connections",
                &m.tcp_received,
            ),
        ] {
            registry.register(name, help, f.clone());
        }
        registry.register(
            "istio_requests",
            "Total number of requests handled by the waypoint",
            m.requests.clone(),
        );
        registry.register(
            "istio_request_duration_milliseconds",
            "Duration of requests in milliseconds",
            m.duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Size of request bodies in bytes",
            m.request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Size of response bodies in bytes",
            m.response_bytes.clone(),
        );
        m
    }

    /// Counts an opaque TCP connection opened.
    pub fn tcp_open(&self, labels: &RequestLabels) {
        self.tcp_opened.get_or_create(labels).inc();
    }

    /// Counts an opaque TCP connection closed with its byte counts (`received` from the client,
    /// `sent` back to it).
    pub fn tcp_close(&self, labels: &RequestLabels, received: u64, sent: u64) {
        self.tcp_closed.get_or_create(labels).inc();
        self.tcp_received.get_or_create(labels).inc_by(received);
        self.tcp_sent.get_or_create(labels).inc_by(sent);
    }

    /// Records one finished request.
    pub fn record(&self, o: &Observation) {
        self.series(&o.labels)
            .record(o.duration_ms, o.request_bytes, o.response_bytes);
    }

    /// The request metrics of one label set, to record many requests without building and
    /// hashing the labels each time (one lookup per family here, none in [`Series::record`]).
    pub fn series(&self, labels: &RequestLabels) -> Series {
        Series {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        }
    }
}

/// Handles on the four request metrics of one label set (shared with the registry).
#[derive(Debug, Clone)]
pub struct Series {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl Series {
    /// Records one finished request.
    pub fn record(&self, duration_ms: f64, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.observe(duration_ms);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_exposed_with_istio_names_and_labels() {
        let mut reg = Registry::default();
        let m = Metrics::new(&mut reg);
        let mut o = Observation::default();
        o.labels.reporter = "waypoint".into();
        o.labels.response_code = "503".into();
        o.labels.response_flags = "UF".into();
        o.duration_ms = 3.0;
        m.record(&o);
        m.series(&o.labels).record(3.0, 0, 0);
        let text = ztunnel::metrics::encode_text(&reg).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("istio_requests_total");
        assert!(line.contains("reporter=\"waypoint\""), "{line}");
        assert!(line.contains("response_code=\"503\""), "{line}");
        assert!(line.contains("response_flags=\"UF\""), "{line}");
        assert!(line.contains("source_workload=\"unknown\""), "{line}");
        assert!(line.ends_with(" 2"), "{line}");
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"));
        assert!(text.contains("istio_response_bytes_sum{"));
    }
}
