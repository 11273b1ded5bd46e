//! The one access-log record ztunnel writes per connection (DESIGN.md 6).

use std::net::SocketAddr;
use std::time::Duration;

/// Which way the connection goes through this ztunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Into a local pod.
    Inbound,
    /// Out of a local pod.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// Everything the access log says about one finished connection.
///
/// `bytes_sent`/`bytes_recv` are from the point of view of the local application: outbound, what
/// the client sent and received; inbound, what the server sent and received (see
/// [`crate::metrics::ConnectionMetrics::access_log_bytes`]).
#[derive(Clone, Debug)]
pub struct AccessLog {
    /// Client address.
    pub src_addr: SocketAddr,
    /// Client workload name, if known.
    pub src_workload: Option<String>,
    /// Client identity (SPIFFE id), only when verified by mTLS.
    pub src_identity: Option<String>,
    /// Destination address (the original destination, or the endpoint chosen for a service).
    pub dst_addr: SocketAddr,
    /// Address carried in the HBONE CONNECT `:authority`, when tunnelled.
    pub dst_hbone_addr: Option<SocketAddr>,
    /// Destination service hostname, if the connection was to a service.
    pub dst_service: Option<String>,
    /// Destination workload name, if known.
    pub dst_workload: Option<String>,
    /// Destination identity (SPIFFE id), when known.
    pub dst_identity: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Bytes the local application sent.
    pub bytes_sent: u64,
    /// Bytes the local application received.
    pub bytes_recv: u64,
    /// How long the connection lasted.
    pub duration: Duration,
    /// Why the connection failed, if it did (the record is then logged at WARN).
    pub error: Option<String>,
    /// The authorization decision: which policy allowed or denied it, or that no ALLOW policy
    /// matched and which were tried.
    pub reason: Option<String>,
}

/// One `tracing` event with the access-log fields; macro because the level must be a constant.
macro_rules! access_event {
    ($level:expr, $log:expr) => {
        tracing::event!(
            target: "access",
            $level,
            src.addr = %$crate::telemetry::LogAddr($log.src_addr),
            src.workload = $log.src_workload.as_deref(),
            src.identity = $log.src_identity.as_deref(),
            dst.addr = %$crate::telemetry::LogAddr($log.dst_addr),
            dst.hbone_addr = $log
                .dst_hbone_addr
                .map(|a| tracing::field::display($crate::telemetry::LogAddr(a))),
            dst.service = $log.dst_service.as_deref(),
            dst.workload = $log.dst_workload.as_deref(),
            dst.identity = $log.dst_identity.as_deref(),
            direction = $log.direction.as_str(),
            bytes_sent = $log.bytes_sent,
            bytes_recv = $log.bytes_recv,
            duration = %format_args!("{}ms", $log.duration.as_millis()),
            error = $log.error.as_deref(),
            reason = $log.reason.as_deref(),
            "connection complete"
        )
    };
}

impl AccessLog {
    /// A record with only the addresses and direction set.
    pub fn new(src_addr: SocketAddr, dst_addr: SocketAddr, direction: Direction) -> Self {
        Self {
            src_addr,
            src_workload: None,
            src_identity: None,
            dst_addr,
            dst_hbone_addr: None,
            dst_service: None,
            dst_workload: None,
            dst_identity: None,
            direction,
            bytes_sent: 0,
            bytes_recv: 0,
            duration: Duration::ZERO,
            error: None,
            reason: None,
        }
    }

    /// Completes the record of a connection that started at `start` with how it ended, and
    /// writes it (see [`AccessLog::emit`]).
    pub fn finish<E: std::fmt::Display>(
        mut self,
        start: std::time::Instant,
        result: Result<(), E>,
    ) {
        self.duration = start.elapsed();
        self.error = result.err().map(|e| e.to_string());
        self.emit();
    }

    /// Writes the record: exactly one event with target `access`, at INFO, or WARN when `error`
    /// is set. Absent optional fields are left out.
    pub fn emit(&self) {
        if self.error.is_some() {
            access_event!(tracing::Level::WARN, self);
        } else {
            access_event!(tracing::Level::INFO, self);
        }
    }
}
