// Shared by several test files, each using part of it.
#![allow(dead_code)]

//! A fake Kubernetes API server for meshctl's tests (the approach of control/tests/support): objects
//! kept by their API path, HTTP GET of an object (404 when absent) or of a collection (namespaced or
//! cluster-wide, `labelSelector=k=v`), PATCH (server-side apply creates or merges; JSON merge patch
//! per RFC 7386 on an existing object), DELETE, and `pods/<name>/portforward` speaking the
//! `v4.channel.k8s.io` WebSocket protocol to a TCP target the test chooses. Every request is
//! recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Plurals (the last segment of a collection path).
const PLURALS: [&str; 3] = ["namespaces", "pods", "gateways"];

/// Opens the TCP connection a port-forward carries.
pub type Connector = Arc<dyn Fn() -> std::io::Result<std::net::TcpStream> + Send + Sync>;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content-Type header.
    pub content_type: String,
    /// Body as JSON (Null when empty).
    pub body: Value,
}

/// The fake server's state.
#[derive(Clone, Default)]
pub struct FakeApi {
    /// Objects by path (`/api/v1/namespaces/shop`, `/apis/g/v1/namespaces/shop/gateways/wp`).
    pub objects: Arc<Mutex<BTreeMap<String, Value>>>,
    /// Every request.
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// Where port-forwards go.
    pub forward: Arc<Mutex<Option<Connector>>>,
}

fn reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
                "code": 404, "message": format!("{path} not found")}),
    )
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn decode(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%2F", "/")
        .replace("%2f", "/")
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `obj` at `path`.
    pub fn put(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.to_owned(), obj);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Requests with `method`.
    pub fn requests_of(&self, method: &str) -> Vec<Recorded> {
        let r = self.requests.lock().unwrap();
        r.iter().filter(|x| x.method == method).cloned().collect()
    }

    /// Port-forwards connect with `c`.
    pub fn forward_to(&self, c: Connector) {
        *self.forward.lock().unwrap() = Some(c);
    }

    fn list(&self, path: &str, query: &str) -> Value {
        let plural = path.rsplit('/').next().unwrap_or_default();
        let namespaced = path.contains("/namespaces/");
        // Cluster-wide collection `<api>/<plural>`: objects live under `<api>/namespaces/...`.
        let api_prefix = path
            .rsplit_once('/')
            .map(|(p, _)| p)
            .unwrap_or_default()
            .to_owned();
        let label = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .map(decode);
        let objects = self.objects.lock().unwrap();
        let items: Vec<Value> = objects
            .iter()
            .filter(|(k, _)| {
                if namespaced || plural == "namespaces" {
                    k.strip_prefix(&format!("{path}/"))
                        .is_some_and(|rest| !rest.contains('/'))
                } else {
                    // Cluster-wide list of a namespaced kind: <api>/namespaces/<ns>/<plural>/<name>.
                    k.starts_with(&format!("{api_prefix}/namespaces/"))
                        && k.split('/').rev().nth(1) == Some(plural)
                }
            })
            .map(|(_, v)| v.clone())
            .filter(|v| match &label {
                Some(sel) => sel.split(',').all(|kv| {
                    let (k, want) = kv.split_once('=').unwrap_or((kv, ""));
                    v["metadata"]["labels"][k] == want
                }),
                None => true,
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
    }

    async fn handle(
        self,
        mut req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let method = req.method().to_string();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if path.ends_with("/portforward") {
            self.requests.lock().unwrap().push(Recorded {
                method,
                path: path.clone(),
                query: query.clone(),
                content_type,
                body: Value::Null,
            });
            return Ok(self.portforward(&mut req, &query));
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.requests.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let last = path.rsplit('/').next().unwrap_or_default();
        let resp = match method.as_str() {
            "GET" if PLURALS.contains(&last) => reply(StatusCode::OK, &self.list(&path, &query)),
            "GET" => match self.get(&path) {
                Some(v) => reply(StatusCode::OK, &v),
                None => not_found(&path),
            },
            "PATCH" => {
                let mut objects = self.objects.lock().unwrap();
                let apply = content_type.starts_with("application/apply-patch");
                match objects.get_mut(&path) {
                    Some(existing) => {
                        merge(existing, &body);
                        reply(StatusCode::OK, existing)
                    }
                    None if apply => {
                        objects.insert(path.clone(), body.clone());
                        reply(StatusCode::CREATED, &body)
                    }
                    None => not_found(&path),
                }
            }
            "DELETE" => match self.objects.lock().unwrap().remove(&path) {
                Some(v) => reply(StatusCode::OK, &v),
                None => not_found(&path),
            },
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"kind": "Status", "code": 405}),
            ),
        };
        Ok(resp)
    }

    /// Answers the WebSocket upgrade and relays channel 0 of the first port to the connector.
    fn portforward(
        &self,
        req: &mut Request<hyper::body::Incoming>,
        query: &str,
    ) -> Response<Full<Bytes>> {
        let port: u16 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("ports="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()));
        let connector = self.forward.lock().unwrap().clone();
        let (Some(key), Some(connector)) = (key, connector) else {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"kind": "Status", "code": 400}),
            );
        };
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            let (mut sink, mut stream) = ws.split();
            let init =
                |ch: u8| Message::binary(vec![ch, port.to_le_bytes()[0], port.to_le_bytes()[1]]);
            if sink.send(init(0)).await.is_err() || sink.send(init(1)).await.is_err() {
                return;
            }
            let Ok(Ok(std_tcp)) = tokio::task::spawn_blocking(move || connector()).await else {
                let _ = sink
                    .send(Message::binary(b"\x01connection refused".to_vec()))
                    .await;
                return;
            };
            let _ = std_tcp.set_nonblocking(true);
            let Ok(tcp) = tokio::net::TcpStream::from_std(std_tcp) else {
                return;
            };
            let (mut rd, mut wr) = tcp.into_split();
            let up = async {
                while let Some(Ok(msg)) = stream.next().await {
                    if let Message::Binary(b) = msg
                        && b.len() > 1
                        && b[0] == 0
                        && wr.write_all(&b[1..]).await.is_err()
                    {
                        break;
                    }
                }
            };
            let down = async {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut m = Vec::with_capacity(n + 1);
                            m.push(0);
                            m.extend_from_slice(&buf[..n]);
                            if sink.send(Message::binary(m)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = sink.send(Message::Close(None)).await;
            };
            tokio::join!(up, down);
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("sec-websocket-accept", key.parse().unwrap());
        h.insert(
            "sec-websocket-protocol",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        r
    }

    /// Serves on 127.0.0.1 (an ephemeral port) and returns a kube client for it.
    pub async fn serve(self) -> kube::Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let api = self.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| api.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}
