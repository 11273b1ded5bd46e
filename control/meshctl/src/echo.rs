//! `meshctl echo`, the test application of DESIGN.md 7 (also run by the end-to-end tests as
//! `mesh-echo`): HTTP/1.1 and h2c on one port, answering any method with the JSON of DESIGN.md 7
//! (`{"path","host","method","proto","headers","namespace","pod","service_account","version"}`),
//! and gRPC (`content-type: application/grpc`, any method) with one length-prefixed message
//! carrying the same JSON and `grpc-status: 0`. `--status` and `--delay` make it misbehave on
//! purpose (retries, timeouts). [`tcp`] is the plain TCP echo of `--tcp-port`.

pub mod tcp;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The line printed once the server listens.
pub const READY_LINE: &str = "echo listening on";

/// How the echo server behaves.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// Reported `version`.
    pub version: String,
    /// Status of every HTTP answer (200 when 0).
    pub status: u16,
    /// Wait before answering.
    pub delay: Duration,
    /// Reported pod name (`POD_NAME`).
    pub pod: String,
    /// Reported namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// Reported service account (`SERVICE_ACCOUNT`).
    pub service_account: String,
}

impl EchoOptions {
    /// Options with pod, namespace and service account from the pod environment.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        Self {
            pod: env("POD_NAME"),
            namespace: env("POD_NAMESPACE"),
            service_account: env("SERVICE_ACCOUNT"),
            ..Self::default()
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// The JSON an echo answers with, for a request head.
pub fn echo_json(opts: &EchoOptions, req: &http::request::Parts) -> serde_json::Value {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &req.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    serde_json::json!({
        "path": req.uri.path_and_query().map_or("/", |p| p.as_str()),
        "host": host,
        "method": req.method.as_str(),
        "proto": format!("{:?}", req.version),
        "headers": headers,
        "namespace": opts.namespace,
        "pod": opts.pod,
        "service_account": opts.service_account,
        "version": opts.version,
    })
}

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

async fn answer(opts: Arc<EchoOptions>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Read the whole request body first: a client may wait for it to be consumed.
    let _ = body.collect().await;
    if !opts.delay.is_zero() {
        tokio::time::sleep(opts.delay).await;
    }
    let json = echo_json(&opts, &parts).to_string();
    if is_grpc(&parts.headers) {
        let mut msg = BytesMut::with_capacity(json.len() + 5);
        msg.put_u8(0);
        msg.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
        msg.put_slice(json.as_bytes());
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(msg.freeze())),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        return resp;
    }
    let mut resp = Response::new(Full::new(Bytes::from(json)).boxed());
    *resp.status_mut() = StatusCode::from_u16(opts.status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves on `listener` forever (HTTP/1.1 and h2c, told apart by the preface).
pub async fn serve(listener: TcpListener, opts: EchoOptions) {
    let opts = Arc::new(opts);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let opts = opts.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let opts = opts.clone();
                async move { Ok::<_, Infallible>(answer(opts, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

/// Binds `addr`, prints [`READY_LINE`], serves forever.
pub async fn run(addr: SocketAddr, opts: EchoOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("{READY_LINE} {}", listener.local_addr()?);
    serve(listener, opts).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_http1_with_the_request_as_json() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let opts = EchoOptions {
            version: "v1".into(),
            pod: "echo-v1-abc-def".into(),
            ..Default::default()
        };
        tokio::spawn(serve(l, opts));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/a?b=1")
            .header("host", "echo")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["path"], "/a?b=1");
        assert_eq!(v["host"], "echo");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["pod"], "echo-v1-abc-def");
        assert_eq!(v["version"], "v1");
        assert_eq!(v["headers"]["x-a"], serde_json::json!(["1", "2"]));
    }

    #[tokio::test]
    async fn answers_grpc_over_h2c_with_a_message_and_status_trailer() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, EchoOptions::default()));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::post("http://echo:7070/proto.EchoTestService/Echo")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        let body = collected.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body[5..]).unwrap();
        assert_eq!(v["path"], "/proto.EchoTestService/Echo");
        assert_eq!(v["proto"], "HTTP/2.0");
    }
}
