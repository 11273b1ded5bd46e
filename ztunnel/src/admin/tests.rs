//! In-process tests of the three servers on loopback, with a real HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::{Metrics, Reporter, TrafficLabels};
use crate::telemetry::{LogFormat, build_subscriber};

struct Reply {
    status: StatusCode,
    content_type: String,
    body: String,
}

async fn call(addr: SocketAddr, method: Method, path: &str) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("response within 5s")
        .expect("response");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// Starts an admin server; the returned subscriber must stay alive for log reloads to work.
async fn start_admin(
    drain: CancellationToken,
    shutdown: CancellationToken,
) -> (SocketAddr, impl tracing::Subscriber) {
    let (subscriber, log) =
        build_subscriber(LogFormat::Text, "info", std::io::sink, false).expect("subscriber");
    let dump: ConfigDumpFn = Arc::new(|| serde_json::json!({"workloads": [{"name": "a"}]}));
    let state = AdminState::new(dump, log, drain);
    let (listener, addr) = loopback().await;
    tokio::spawn(serve_admin(listener, state, shutdown));
    (addr, subscriber)
}

#[tokio::test]
async fn config_dump_returns_the_callback_json() {
    let (addr, _sub) = start_admin(CancellationToken::new(), CancellationToken::new()).await;
    let r = call(addr, Method::GET, "/config_dump").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["workloads"][0]["name"], "a");
    let r = call(addr, Method::POST, "/config_dump").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = call(addr, Method::GET, "/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logging_shows_and_changes_the_filter() {
    let (addr, _sub) = start_admin(CancellationToken::new(), CancellationToken::new()).await;
    let r = call(addr, Method::GET, "/logging").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "current log level is info\n");

    let r = call(addr, Method::POST, "/logging?level=debug").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "current log level is debug\n");

    // Per-target directives, percent-encoded or not.
    let r = call(addr, Method::POST, "/logging?level=ztunnel%3Dtrace%2Cwarn").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("ztunnel=trace"), "{}", r.body);
    let r = call(addr, Method::POST, "/logging?level=hbone=debug,info").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("hbone=debug"), "{}", r.body);

    let r = call(addr, Method::POST, "/logging?level=ztunnel=loud").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid log filter"), "{}", r.body);
    let r = call(addr, Method::POST, "/logging").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(addr, Method::GET, "/logging").await;
    assert!(
        r.body.contains("hbone=debug"),
        "bad requests change nothing: {}",
        r.body
    );

    let r = call(addr, Method::POST, "/logging?reset").await;
    assert_eq!(r.body, "current log level is info\n");
}

#[tokio::test]
async fn quitquitquit_starts_the_drain() {
    let drain = CancellationToken::new();
    let (addr, _sub) = start_admin(drain.clone(), CancellationToken::new()).await;
    let r = call(addr, Method::GET, "/quitquitquit").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!drain.is_cancelled());
    let r = call(addr, Method::POST, "/quitquitquit").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(drain.is_cancelled());
}

#[tokio::test]
async fn metrics_are_served_on_both_paths() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let conn = metrics.connection(TrafficLabels::new(Reporter::Destination));
    conn.add_received(42);
    let (listener, addr) = loopback().await;
    tokio::spawn(serve_metrics(
        listener,
        Arc::new(registry),
        CancellationToken::new(),
    ));
    for path in ["/metrics", "/stats/prometheus"] {
        let r = call(addr, Method::GET, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.content_type, crate::metrics::OPENMETRICS_CONTENT_TYPE);
        assert!(
            r.body
                .contains("istio_tcp_connections_opened_total{reporter=\"destination\"")
        );
        assert!(
            r.body.contains("istio_tcp_received_bytes_total{"),
            "{}",
            r.body
        );
        assert!(r.body.ends_with("# EOF\n"));
    }
    assert_eq!(
        call(addr, Method::GET, "/other").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn readiness_follows_the_flag() {
    let ready = Ready::new();
    let (listener, addr) = loopback().await;
    tokio::spawn(serve_readiness(
        listener,
        ready.clone(),
        CancellationToken::new(),
    ));
    let r = call(addr, Method::GET, "/healthz/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    ready.set_ready(true);
    assert_eq!(
        call(addr, Method::GET, "/healthz/ready").await.status,
        StatusCode::OK
    );
    ready.set_ready(false);
    assert_eq!(
        call(addr, Method::GET, "/healthz/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let shutdown = CancellationToken::new();
    let (listener, addr) = loopback().await;
    let server = tokio::spawn(serve_readiness(listener, Ready::new(), shutdown.clone()));
    assert_eq!(
        call(addr, Method::GET, "/healthz/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("server returns promptly after shutdown")
        .expect("join");
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn bind_names_the_server_on_failure() {
    let (_held, addr) = loopback().await;
    let err = bind("metrics", addr).await.expect_err("port in use");
    assert!(err.to_string().contains("metrics server"), "{err}");
}
