//! The one access-log record the waypoint writes per request (DESIGN.md 6), and per opaque TCP
//! tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ztunnel::telemetry::LogAddr;

/// Everything the access log says about one finished request.
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    /// Original client address.
    pub src_addr: Option<SocketAddr>,
    /// Client identity (verified by mTLS).
    pub src_identity: Option<Arc<str>>,
    /// CONNECT authority (service VIP:port or workload address).
    pub dst_addr: Option<SocketAddr>,
    /// Destination service FQDN.
    pub dst_service: Option<String>,
    /// Endpoint the request went to.
    pub upstream: Option<SocketAddr>,
    /// Workload of that endpoint.
    pub dst_workload: Option<String>,
    /// Route `kind/namespace/name` and rule index.
    pub route: Option<String>,
    /// Method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Host / authority as received.
    pub authority: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: String,
    /// Status sent to the client.
    pub status: u16,
    /// gRPC status, for gRPC calls.
    pub grpc_status: Option<String>,
    /// Envoy-style response flags.
    pub flags: &'static str,
    /// Attempts made upstream (retries + 1).
    pub attempts: u32,
    /// Request body bytes.
    pub bytes_recv: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// Until the end of the response body.
    pub duration: Duration,
    /// `x-request-id`.
    pub request_id: String,
    /// W3C trace id.
    pub trace_id: String,
    /// What went wrong, if anything (the record is then logged at WARN).
    pub error: Option<String>,
    /// `namespace/name` of the AUDIT AuthorizationPolicies the request matched (comma separated).
    pub audit: Option<String>,
}

macro_rules! request_event {
    ($level:expr, $log:expr) => {
        tracing::event!(
            target: "access",
            $level,
            src.addr = $log.src_addr.map(|a| tracing::field::display(LogAddr(a))),
            src.identity = $log.src_identity.as_deref(),
            dst.addr = $log.dst_addr.map(|a| tracing::field::display(LogAddr(a))),
            dst.service = $log.dst_service.as_deref(),
            dst.workload = $log.dst_workload.as_deref(),
            upstream = $log.upstream.map(|a| tracing::field::display(LogAddr(a))),
            route = $log.route.as_deref(),
            method = %$log.method,
            path = %$log.path,
            authority = %$log.authority,
            protocol = %$log.protocol,
            status = $log.status,
            grpc_status = $log.grpc_status.as_deref(),
            flags = %$log.flags,
            attempts = $log.attempts,
            bytes_sent = $log.bytes_sent,
            bytes_recv = $log.bytes_recv,
            duration = %format_args!("{}ms", $log.duration.as_millis()),
            request_id = %$log.request_id,
            trace_id = %$log.trace_id,
            error = $log.error.as_deref(),
            audit = $log.audit.as_deref(),
            "request complete"
        )
    };
}

impl RequestLog {
    /// Writes the record: one event with target `access`, INFO (WARN with an error).
    pub fn emit(&self) {
        if self.error.is_some() {
            request_event!(tracing::Level::WARN, self);
        } else {
            request_event!(tracing::Level::INFO, self);
        }
    }
}
