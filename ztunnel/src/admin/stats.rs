//! The metrics and readiness servers.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Ready;
use super::server::{Body, method_not_allowed, not_found, serve, text, with_type};
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, encode_text};

/// Serves the registry as OpenMetrics text at `/metrics` and `/stats/prometheus` until `shutdown`
/// is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    serve("metrics", listener, shutdown, move |req| {
        let registry = registry.clone();
        async move { metrics(&registry, &req) }
    })
    .await;
}

fn metrics(registry: &Registry, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/metrics" | "/stats/prometheus" if req.method() == Method::GET => {
            match encode_text(registry) {
                Ok(body) => with_type(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, body.into_bytes()),
                Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            }
        }
        "/metrics" | "/stats/prometheus" => method_not_allowed("GET"),
        other => not_found(other),
    }
}

/// Serves `/healthz/ready` (200 when `ready` is set, 503 before) until `shutdown` is cancelled.
pub async fn serve_readiness(listener: TcpListener, ready: Ready, shutdown: CancellationToken) {
    serve("readiness", listener, shutdown, move |req| {
        let ready = ready.clone();
        async move { readiness(&ready, &req) }
    })
    .await;
}

fn readiness(ready: &Ready, req: &Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/healthz/ready" if req.method() == Method::GET || req.method() == Method::HEAD => {
            if ready.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/healthz/ready" => method_not_allowed("GET, HEAD"),
        other => not_found(other),
    }
}
