// Shared by several test crates, each using part of it.
#![allow(dead_code)]

//! A fake Kubernetes API server for tests: list and watch (newline-delimited JSON events, replayed from the
//! watch's resourceVersion), PATCH (recorded, echoed; Services get a cluster IP), and single-object GET/POST for
//! Secrets and ConfigMaps (404 until created).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mesh_control::source::Source;
use mesh_control::source::kube::KubeSource;
use mesh_control::store::Store;
use mesh_control::translate::Options;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Plurals served as single objects (GET/POST by name) instead of lists.
const SINGLE_OBJECT_PLURALS: [&str; 2] = ["secrets", "configmaps"];

/// Objects by plural, and a channel of watch events (plural, event JSON).
#[derive(Clone)]
pub struct FakeApi {
    /// PATCH requests received: (path, query, body).
    pub patches: Arc<Mutex<Vec<(String, String, Value)>>>,
    /// Single objects by path (Secrets, ConfigMaps), created by POST.
    pub singles: Arc<Mutex<HashMap<String, Value>>>,
    objects: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// Every event so far (plural, resourceVersion, event): a watch from resourceVersion R replays those after R,
    /// so events sent before the watcher connected are not lost.
    history: Arc<Mutex<Vec<(String, u64, Value)>>>,
    events: broadcast::Sender<(String, Value)>,
    rv: Arc<std::sync::atomic::AtomicU64>,
}

impl FakeApi {
    pub fn new() -> Self {
        Self {
            patches: Arc::default(),
            singles: Arc::default(),
            objects: Arc::default(),
            history: Arc::default(),
            events: broadcast::channel(64).0,
            rv: Arc::new(100.into()),
        }
    }

    fn next_rv(&self) -> String {
        (self.rv.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1).to_string()
    }

    pub fn add(&self, plural: &str, mut obj: Value) {
        obj["metadata"]["resourceVersion"] = self.next_rv().into();
        self.objects
            .lock()
            .expect("lock")
            .entry(plural.into())
            .or_default()
            .push(obj);
    }

    pub fn event(&self, plural: &str, kind: &str, mut obj: Value) {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = rv.clone().into();
        let ev = json!({"type": kind, "object": obj});
        let mut history = self.history.lock().expect("lock");
        history.push((plural.into(), rv.parse().unwrap_or(0), ev.clone()));
        let _ = self.events.send((plural.into(), ev));
    }

    async fn handle(
        self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.split('/').collect();
        let single =
            segments.len() >= 2 && SINGLE_OBJECT_PLURALS.contains(&segments[segments.len() - 2]);
        if req.method() == hyper::Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.singles
                .lock()
                .expect("lock")
                .insert(format!("{path}/{name}"), v.clone());
            let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::from(v.to_string()))));
            *resp.status_mut() = hyper::StatusCode::CREATED;
            return Ok(resp);
        }
        if req.method() == hyper::Method::GET && single {
            return Ok(match self.singles.lock().expect("lock").get(&path) {
                Some(v) => Response::new(BodyExt::boxed(Full::new(Bytes::from(v.to_string())))),
                None => {
                    let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                        "reason": "NotFound", "code": 404, "message": format!("{path} not found")});
                    let mut resp =
                        Response::new(BodyExt::boxed(Full::new(Bytes::from(status.to_string()))));
                    *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                    resp
                }
            });
        }
        if req.method() == hyper::Method::PATCH {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            self.patches
                .lock()
                .expect("lock")
                .push((path.clone(), query, v.clone()));
            if path.contains("/services/") {
                v["spec"]["clusterIP"] = "10.96.7.7".into();
            }
            return Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(
                v.to_string(),
            )))));
        }
        let plural = path.rsplit('/').next().unwrap_or_default().to_string();
        if query.contains("watch=true") || query.contains("watch=1") {
            let from: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (mut rx, past) = {
                let history = self.history.lock().expect("lock");
                let past: Vec<(String, Value)> = history
                    .iter()
                    .filter(|(p, rv, _)| *p == plural && *rv > from)
                    .map(|(p, _, e)| (p.clone(), e.clone()))
                    .collect();
                (self.events.subscribe(), past)
            };
            let (tx, body_rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
            tokio::spawn(async move {
                let mut past = past.into_iter();
                loop {
                    let (p, ev) = match past.next() {
                        Some(e) => e,
                        None => match rx.recv().await {
                            Ok(e) => e,
                            Err(_) => return,
                        },
                    };
                    if p != plural {
                        continue;
                    }
                    let mut line = serde_json::to_vec(&ev).expect("json");
                    line.push(b'\n');
                    if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = futures_util::stream::unfold(body_rx, |mut r| async move {
                r.recv().await.map(|m| (m, r))
            });
            return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
        }
        let items = self
            .objects
            .lock()
            .expect("lock")
            .get(&plural)
            .cloned()
            .unwrap_or_default();
        let rv = self
            .rv
            .load(std::sync::atomic::Ordering::SeqCst)
            .to_string();
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items});
        Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(
            list.to_string(),
        )))))
    }

    pub async fn serve(self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
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
                        .await;
                });
            }
        });
        addr
    }

    /// Serves this API and returns a kube-rs client of it.
    pub async fn client(&self) -> kube::Client {
        let addr = self.clone().serve().await;
        kube::Client::try_from(kube::Config::new(
            format!("http://{addr}").parse().expect("url"),
        ))
        .expect("client")
    }

    /// Serves this API and runs control's watchers on it into a new store: the client, the
    /// store, and the token that stops the watchers.
    pub async fn watched(&self) -> (kube::Client, Arc<Store>, CancellationToken) {
        let client = self.client().await;
        let store = Store::new(Options::default());
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        Box::new(KubeSource::new(client.clone())).spawn(tx, stop.clone());
        tokio::spawn(store.clone().run(rx, stop.clone()));
        (client, store, stop)
    }
}
