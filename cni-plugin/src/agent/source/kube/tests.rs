use super::*;

#[test]
fn pod_meta_reads_identity_labels_network_and_phase() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                     "labels": {"istio.io/dataplane-mode": "ambient"},
                     "annotations": {"a": "b"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "web", "hostNetwork": false,
                 "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}
    }))
    .expect("pod");
    let meta = pod_meta(&pod);
    assert_eq!(meta.key(), "shop/web-1");
    assert_eq!(
        (meta.uid.as_str(), meta.node_name.as_str()),
        ("u-1", "node-1")
    );
    assert_eq!(meta.service_account(), "web");
    assert_eq!(meta.labels["istio.io/dataplane-mode"], "ambient");
    assert_eq!(
        meta.ips,
        vec!["10.1.0.5".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert!(!meta.terminated && !meta.host_network);

    let done: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "job", "namespace": "x", "uid": "u-2"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c"}]},
        "status": {"phase": "Succeeded"}
    }))
    .expect("pod");
    let meta = pod_meta(&done);
    assert!(meta.terminated && meta.host_network);
    assert_eq!(meta.service_account(), "default");
}

/// A small fake API server: list + watch of pods and namespaces (watch events pushed by the
/// test), and PATCH of pods (recorded). Speaks the same JSON over HTTP as the real one.
mod fake_api {
    use std::sync::{Arc, Mutex};

    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
    use hyper::body::Bytes;
    use hyper::body::Frame;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::sync::broadcast;

    /// What the server serves and saw.
    pub struct Api {
        pub pods: serde_json::Value,
        pub namespaces: serde_json::Value,
        pub events: broadcast::Sender<(String, String)>,
        pub patches: Mutex<Vec<(String, String, String)>>,
        pub queries: Mutex<Vec<String>>,
    }

    type Body = BoxBody<Bytes, std::convert::Infallible>;

    fn full(text: String) -> Body {
        Full::new(Bytes::from(text)).boxed()
    }

    async fn handle(api: Arc<Api>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        api.queries
            .lock()
            .expect("lock")
            .push(format!("{} {path}?{query}", req.method()));
        if req.method() == hyper::Method::PATCH {
            let ctype = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = req.into_body().collect().await.expect("body").to_bytes();
            let body = String::from_utf8_lossy(&body).to_string();
            api.patches.lock().expect("lock").push((path, ctype, body));
            let pod = api.pods["items"][0].clone();
            return Response::new(full(pod.to_string()));
        }
        let kind = if path == "/api/v1/pods" {
            "pods"
        } else {
            "namespaces"
        };
        if query.contains("watch=true") {
            let rx = api.events.subscribe();
            let kind = kind.to_string();
            let stream = tokio_stream_from(rx).filter_map(move |(k, line)| {
                let keep = k == kind;
                async move { keep.then(|| Ok(Frame::data(Bytes::from(format!("{line}\n"))))) }
            });
            return Response::new(BodyExt::boxed(StreamBody::new(Box::pin(stream))));
        }
        let list = if kind == "pods" {
            &api.pods
        } else {
            &api.namespaces
        };
        Response::new(full(list.to_string()))
    }

    fn tokio_stream_from(
        rx: broadcast::Receiver<(String, String)>,
    ) -> impl futures_util::Stream<Item = (String, String)> {
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => return Some((item, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Serves `api` on 127.0.0.1 (a port of its own) from `rt`; returns the URL.
    pub fn start(rt: &tokio::runtime::Runtime, api: Arc<Api>) -> String {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(api, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }
}

#[test]
fn watches_a_fake_api_server_and_patches_the_annotation() {
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::Duration;

    use crate::agent::Msg;

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "5"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
        "status": {"phase": "Running"}
    });
    let ns = |labels: serde_json::Value, rv: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "resourceVersion": rv, "labels": labels}})
    };
    let (events, _) = tokio::sync::broadcast::channel(16);
    let api = Arc::new(fake_api::Api {
        pods: serde_json::json!({"apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "10"}, "items": [pod.clone()]}),
        namespaces: serde_json::json!({"apiVersion": "v1", "kind": "NamespaceList",
            "metadata": {"resourceVersion": "10"}, "items": [ns(serde_json::json!({}), "3")]}),
        events: events.clone(),
        patches: Mutex::default(),
        queries: Mutex::default(),
    });
    let url = fake_api::start(&rt, api.clone());
    let config = kube::Config::new(url.parse().expect("url"));
    let source = KubeSource::new("node-1".into(), Some(config)).expect("source");
    let (tx, rx) = mpsc::channel();
    source.start(EventSink::new(tx)).expect("start");
    let next = || match rx
        .recv_timeout(Duration::from_secs(10))
        .expect("event in time")
    {
        Msg::Source(e) => e,
        _ => panic!("only source events expected"),
    };
    let mut initial = Vec::new();
    loop {
        match next() {
            SourceEvent::Synced => break,
            e => initial.push(e),
        }
    }
    assert!(
        initial
            .iter()
            .any(|e| matches!(e, SourceEvent::Pod(p) if p.uid == "u-1" && p.key() == "shop/web-1")),
        "{initial:?}"
    );
    assert!(
        initial
            .iter()
            .any(|e| matches!(e, SourceEvent::Namespace(n) if n.name == "shop"))
    );
    let queries = api.queries.lock().expect("lock").clone();
    assert!(
        queries.iter().any(|q| q.starts_with("GET /api/v1/pods?")
            && q.contains("fieldSelector=spec.nodeName%3Dnode-1")),
        "pods are filtered to this node: {queries:?}"
    );

    // Live label change and pod deletion arrive through the watches (retry until the watch
    // request is in: the broadcast only reaches subscribed watchers).
    let labelled = ns(
        serde_json::json!({"istio.io/dataplane-mode": "ambient"}),
        "11",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let _ = events.send((
            "namespaces".into(),
            serde_json::json!({"type": "MODIFIED", "object": labelled}).to_string(),
        ));
        if let Ok(Msg::Source(e)) = rx.recv_timeout(Duration::from_millis(200)) {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no watch event");
    };
    assert!(
        matches!(&got, SourceEvent::Namespace(n) if n.labels.get("istio.io/dataplane-mode").map(String::as_str) == Some("ambient")),
        "{got:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let mut gone = pod.clone();
        gone["metadata"]["resourceVersion"] = "12".into();
        let _ = events.send((
            "pods".into(),
            serde_json::json!({"type": "DELETED", "object": gone}).to_string(),
        ));
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Msg::Source(SourceEvent::Namespace(_))) => continue,
            Ok(Msg::Source(e)) => break e,
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "no pod watch event");
    };
    assert_eq!(got, SourceEvent::PodDeleted("u-1".into()));

    // The annotation is a merge patch through the pod's status subresource (as Istio's node agent does: RBAC
    // `pods/status` patch, never the right to change any pod's spec).
    source.set_redirection(&pod_meta(&serde_json::from_value(pod).expect("pod")), true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while api.patches.lock().expect("lock").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no PATCH");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (path, ctype, body) = api.patches.lock().expect("lock")[0].clone();
    assert_eq!(path, "/api/v1/namespaces/shop/pods/web-1/status");
    assert_eq!(ctype, "application/merge-patch+json");
    assert!(
        body.contains("\"ambient.istio.io/redirection\":\"enabled\""),
        "{body}"
    );
    drop(source);
}
