//! The agent's Prometheus metrics and the small HTTP endpoint that serves them
//! (`/metrics`, `/stats/prometheus`, and `/healthz/ready`).

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the CNI request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `add`, `del`, `check`, `status`.
    pub op: String,
    /// `enrolled`, `not_enrolled`, `ok`, `error`.
    pub result: String,
}

/// Labels of the repair counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepairLabels {
    /// `rules`, `listeners` or `host`.
    pub kind: String,
}

/// The agent's metrics (cheap to clone: all handles share the registry's values).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    enrolled: Gauge,
    not_enforced: Gauge,
    ztunnel_connected: Gauge,
    requests: Family<RequestLabels, Counter>,
    repairs: Family<RepairLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let enrolled = Gauge::default();
        let not_enforced = Gauge::default();
        let ztunnel_connected = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let repairs = Family::<RepairLabels, Counter>::default();
        registry.register(
            "mesh_cni_pods_enrolled",
            "Pods of this node in the mesh (rules installed, handed to ztunnel)",
            enrolled.clone(),
        );
        registry.register(
            "mesh_cni_pods_enrolled_not_enforced",
            "Enrolled pods whose last self-check found rules or ztunnel listeners missing after repair",
            not_enforced.clone(),
        );
        registry.register(
            "mesh_cni_ztunnel_connected",
            "1 when ztunnel is connected to the handoff socket",
            ztunnel_connected.clone(),
        );
        registry.register(
            "mesh_cni_requests",
            "CNI plugin requests by operation and result",
            requests.clone(),
        );
        registry.register(
            "mesh_cni_repairs",
            "Drift repaired by the self-check, by kind",
            repairs.clone(),
        );
        Self {
            registry: Arc::new(registry),
            enrolled,
            not_enforced,
            ztunnel_connected,
            requests,
            repairs,
        }
    }

    /// Sets the enrolled-pods gauge.
    pub fn set_enrolled(&self, n: usize) {
        self.enrolled.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the enrolled-but-not-enforced gauge.
    pub fn set_not_enforced(&self, n: usize) {
        self.not_enforced.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the ztunnel-connected gauge.
    pub fn set_ztunnel_connected(&self, connected: bool) {
        self.ztunnel_connected.set(i64::from(connected));
    }

    /// Counts a CNI request.
    pub fn cni_request(&self, op: &str, result: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                op: op.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts a repair.
    pub fn repaired(&self, kind: &str) {
        self.repairs
            .get_or_create(&RepairLabels { kind: kind.into() })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%err, "cannot encode metrics");
        }
        out
    }
}

/// Serves the metrics on `listener` until the runtime shuts down.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &metrics)) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "metrics connection ended");
            }
        });
    }
}

fn respond(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/metrics" | "/stats/prometheus" => (StatusCode::OK, metrics.encode()),
        "/healthz/ready" => (StatusCode::OK, "ready\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Binds the metrics address (so a taken port is reported at startup).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
