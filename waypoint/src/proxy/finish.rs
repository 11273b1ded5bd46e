//! The end of a request: response body wrapped so that, when it ends, the metrics are recorded
//! and the access-log record is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Response;
use http_body_util::BodyExt;

use super::body::{Counted, GrpcSlot};
use super::{Downstream, Outcome, Proxy};
use crate::access_log::RequestLog;
use crate::metrics::{Observation, RequestLabels};
use crate::resolve::{Picked, Target};
use crate::upstream::Body;

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
        let labels = self.labels(&down, &out, grpc);
        let status = resp.status().as_u16();
        let header_grpc = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let slot: GrpcSlot = Arc::new(Mutex::new(header_grpc));
        log.status = status;
        log.flags = out.reason.map_or("-", |r| r.flag()).to_owned();
        log.attempts = out.attempts;
        log.error = out.error;
        if let Some(ep) = &out.endpoint {
            log.upstream = Some(ep.endpoint.addr);
            log.dst_workload = Some(ep.workload.clone());
        }
        let slot2 = slot.clone();
        let metrics_owner = self.clone();
        let on_end = Box::new(move |bytes: u64| {
            let grpc_status = slot2.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut labels = labels;
            labels.response_code = status.to_string().into();
            if grpc {
                labels.grpc_response_status = grpc_status.clone().into();
            }
            let duration = start.elapsed();
            metrics_owner.metrics.record(&Observation {
                labels,
                duration_ms: duration.as_secs_f64() * 1000.0,
                request_bytes: request_bytes.load(Ordering::Relaxed),
                response_bytes: bytes,
            });
            log.grpc_status = grpc_status;
            log.bytes_sent = bytes;
            log.bytes_recv = request_bytes.load(Ordering::Relaxed);
            log.duration = duration;
            log.emit();
        });
        resp.map(|b| Counted::new(b, on_end).with_grpc_slot(slot).boxed())
    }

    fn labels(&self, down: &Downstream, out: &Outcome, grpc: bool) -> RequestLabels {
        let protocol = if grpc { "grpc" } else { "http" };
        let flags = out.reason.map_or("-", |r| r.flag());
        self.peer_labels(down, out.endpoint.as_ref(), protocol, flags)
    }

    /// Istio labels of traffic from `down`'s client to `endpoint` (when one was chosen).
    pub(crate) fn peer_labels(
        &self,
        down: &Downstream,
        endpoint: Option<&Picked>,
        protocol: &str,
        flags: &str,
    ) -> RequestLabels {
        let mesh = self.state.mesh();
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
