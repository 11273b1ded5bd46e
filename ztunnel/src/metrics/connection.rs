//! Per-connection metric recording.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::labels::{Reporter, ResponseFlags, TrafficLabels};

/// The counters of one label set in each of the four connection families, shared by every
/// connection with that label set (see [`super::Metrics`]).
#[derive(Debug)]
pub(super) struct Series {
    pub(super) opened: Counter,
    /// Created at the first close, so that no `closed` series shows before one happened.
    pub(super) closed: OnceLock<Counter>,
    pub(super) sent: Counter,
    pub(super) received: Counter,
}

/// Records one proxied connection: created by [`super::Metrics::connection`] when the connection
/// opens (counting it opened and active), fed with byte counts while it runs, and counted closed
/// (with its final `response_flags`) when dropped.
///
/// The counters for its label set are resolved once at creation, so each `add_*` call is two
/// relaxed atomic adds. Share it between the two copy directions by reference (`&self`).
///
/// Direction convention (the same as Istio's ztunnel, for both reporters):
/// `istio_tcp_received_bytes_total` counts bytes from the client toward the destination
/// ([`ConnectionMetrics::add_received`]), `istio_tcp_sent_bytes_total` bytes from the destination
/// back to the client ([`ConnectionMetrics::add_sent`]).
#[derive(Debug)]
pub struct ConnectionMetrics {
    labels: TrafficLabels,
    /// Counters of the label set the connection opened with.
    series: Arc<Series>,
    /// `response_flags` at opening: a close with other flags is another series of `closed`.
    opened_flags: ResponseFlags,
    closed: Family<TrafficLabels, Counter>,
    active: Gauge,
    sent: AtomicU64,
    received: AtomicU64,
}

impl ConnectionMetrics {
    pub(super) fn open(
        labels: TrafficLabels,
        series: Arc<Series>,
        closed: Family<TrafficLabels, Counter>,
        active: Gauge,
    ) -> Self {
        series.opened.inc();
        active.inc();
        Self {
            opened_flags: labels.response_flags,
            labels,
            series,
            closed,
            active,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Counts `n` bytes sent from the destination back to the client.
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.series.sent.inc_by(n);
    }

    /// Counts `n` bytes received from the client and forwarded toward the destination.
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.series.received.inc_by(n);
    }

    /// Bytes counted by [`ConnectionMetrics::add_sent`] so far on this connection.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes counted by [`ConnectionMetrics::add_received`] so far on this connection.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// `(bytes_sent, bytes_recv)` for the access log, seen from the reporting proxy's application:
    /// outbound, the client sent what went toward the destination; inbound, the server sent what
    /// went back to the client (Istio's ztunnel logs them the same way).
    pub fn access_log_bytes(&self) -> (u64, u64) {
        match self.labels.reporter {
            Reporter::Source => (self.received(), self.sent()),
            Reporter::Destination => (self.sent(), self.received()),
        }
    }

    /// Sets the `response_flags` the close is recorded with (e.g. `DENY`, `CONNECT`).
    pub fn set_response_flags(&mut self, flags: ResponseFlags) {
        self.labels.response_flags = flags;
    }

    /// The label set of this connection.
    pub fn labels(&self) -> &TrafficLabels {
        &self.labels
    }
}

impl Drop for ConnectionMetrics {
    fn drop(&mut self) {
        if self.labels.response_flags == self.opened_flags {
            let closed = &self.closed;
            let labels = &self.labels;
            self.series
                .closed
                .get_or_init(|| closed.get_or_create_owned(labels))
                .inc();
        } else {
            self.closed.get_or_create(&self.labels).inc();
        }
        self.active.dec();
    }
}
