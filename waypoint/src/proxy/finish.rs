//! The end of a request: response body wrapped so that, when it ends, the metrics are recorded
//! and the access-log record is written. A tunnel keeps the metric series of its recent
//! outcomes, so most requests record without building or hashing a label set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use http::Response;
use http_body_util::BodyExt;

use super::body::{Counted, GrpcSlot};
use super::{Downstream, Outcome, Proxy};
use crate::access_log::RequestLog;
use crate::metrics::{RequestLabels, Series};
use crate::resolve::{Picked, Target};
use crate::state::Mesh;
use crate::upstream::Body;

/// How many label sets a tunnel remembers (its requests' endpoints x outcomes).
const SERIES_PER_TUNNEL: usize = 8;

/// What decides a request's labels besides the tunnel: the mesh config they were read from,
/// the endpoint, the status, the flags and the gRPC status.
#[derive(Debug, PartialEq, Eq)]
struct SeriesKey {
    endpoint: Option<SocketAddr>,
    status: u16,
    flags: &'static str,
    grpc: bool,
    grpc_status: Option<String>,
}

/// A label set of a tunnel's requests and its metric handles. The mesh is held weakly (no old
/// config is kept alive), only to tell whether labels were read from the config in force.
#[derive(Debug)]
pub(super) struct CachedSeries {
    mesh: Weak<Mesh>,
    key: SeriesKey,
    series: Series,
}

impl Proxy {
    /// Wraps the response so the request is recorded when its body ends.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        self: Arc<Self>,
        down: Arc<Downstream>,
        resp: Response<Body>,
        out: Outcome,
        mut log: RequestLog,
        grpc: bool,
        start: Instant,
        request_bytes: Arc<AtomicU64>,
    ) -> Response<Body> {
        let status = resp.status().as_u16();
        let header_grpc = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let slot: GrpcSlot = Arc::new(Mutex::new(header_grpc));
        let flags = out.reason.map_or("-", |r| r.flag());
        log.status = status;
        log.flags = flags;
        log.attempts = out.attempts;
        log.error = out.error;
        if let Some(ep) = &out.endpoint {
            log.upstream = Some(ep.endpoint.addr);
            log.dst_workload = Some(ep.workload.clone());
        }
        let endpoint = out.endpoint;
        let slot2 = slot.clone();
        let on_end = Box::new(move |bytes: u64| {
            let grpc_status = slot2.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let duration = start.elapsed();
            let received = request_bytes.load(Ordering::Relaxed);
            let key = SeriesKey {
                endpoint: endpoint.as_ref().map(|e| e.endpoint.addr),
                status,
                flags,
                grpc,
                grpc_status: if grpc { grpc_status.clone() } else { None },
            };
            self.series(&down, key, endpoint.as_ref()).record(
                duration.as_secs_f64() * 1000.0,
                received,
                bytes,
            );
            log.grpc_status = grpc_status;
            log.bytes_sent = bytes;
            log.bytes_recv = received;
            log.duration = duration;
            log.emit();
        });
        resp.map(|b| Counted::new(b, on_end).with_grpc_slot(slot).boxed())
    }

    /// The metric series of a request of `down` (labels built and looked up only when the
    /// tunnel has not seen this outcome under the current mesh config).
    fn series(&self, down: &Downstream, key: SeriesKey, endpoint: Option<&Picked>) -> Series {
        let mesh = self.state.mesh();
        let mut cache = down.series.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|c| std::ptr::eq(c.mesh.as_ptr(), Arc::as_ptr(&mesh)));
        if let Some(c) = cache.iter().find(|c| c.key == key) {
            return c.series.clone();
        }
        let protocol = if key.grpc { "grpc" } else { "http" };
        let mut labels = self.labels_in(&mesh, down, endpoint, protocol, key.flags);
        labels.response_code = key.status.to_string().into();
        if key.grpc {
            labels.grpc_response_status = key.grpc_status.clone().into();
        }
        let series = self.metrics.series(&labels);
        if cache.len() >= SERIES_PER_TUNNEL {
            cache.remove(0);
        }
        cache.push(CachedSeries {
            mesh: Arc::downgrade(&mesh),
            key,
            series: series.clone(),
        });
        series
    }

    /// Istio labels of traffic from `down`'s client to `endpoint` (when one was chosen).
    pub(crate) fn peer_labels(
        &self,
        down: &Downstream,
        endpoint: Option<&Picked>,
        protocol: &str,
        flags: &str,
    ) -> RequestLabels {
        self.labels_in(&self.state.mesh(), down, endpoint, protocol, flags)
    }

    /// The labels with the names of `mesh`.
    fn labels_in(
        &self,
        mesh: &Mesh,
        down: &Downstream,
        endpoint: Option<&Picked>,
        protocol: &str,
        flags: &str,
    ) -> RequestLabels {
        let src = mesh.snapshot.workload_by_ip(down.client.ip()).filter(|w| {
            w.service_account == down.peer.service_account && w.namespace == down.peer.namespace
        });
        let mut l = RequestLabels {
            reporter: "waypoint".into(),
            source_workload: src.map(|w| w.name.clone()).into(),
            source_workload_namespace: Some(down.peer.namespace.clone()).into(),
            source_principal: Some(down.peer.to_string()).into(),
            source_canonical_service: src.map(|w| w.canonical_name().to_owned()).into(),
            request_protocol: protocol.into(),
            response_flags: flags.into(),
            connection_security_policy: "mutual_tls".into(),
            ..RequestLabels::default()
        };
        if let Some(ep) = endpoint {
            l.destination_workload = Some(ep.workload.clone()).into();
            l.destination_workload_namespace = Some(ep.namespace.clone()).into();
            l.destination_principal = ep.endpoint.identity.as_ref().map(|i| i.to_string()).into();
        }
        if let Target::Service {
            namespace,
            name,
            hostname,
            ..
        } = &down.target
        {
            l.destination_service = Some(hostname.clone()).into();
            l.destination_service_name = Some(name.clone()).into();
            l.destination_service_namespace = Some(namespace.clone()).into();
        }
        l
    }
}
