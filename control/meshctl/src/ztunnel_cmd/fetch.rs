//! Reaching a ztunnel's admin API (127.0.0.1:15000 of its netns, DESIGN.md 3): from inside a
//! named network namespace (local mode: the node's), or through a kube-rs port-forward to the
//! ztunnel pod of a node. One HTTP/1.1 GET over whichever stream that gives.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ZtunnelError;

/// Port of the admin API (DESIGN.md 3).
pub const ADMIN_PORT: u16 = 15000;
/// Label selector of the ztunnel DaemonSet's pods (`deploy/ztunnel/daemonset.yaml`).
pub const ZTUNNEL_SELECTOR: &str = "app=ztunnel";
/// How long one admin request may take (connect, request, body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` over `io` (HTTP/1.1); the body of a 200 answer.
pub async fn http_get<S>(io: S, path: &str, who: &str) -> Result<Bytes, ZtunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |detail: String| ZtunnelError::Http {
        who: who.to_owned(),
        detail,
    };
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, format!("127.0.0.1:{ADMIN_PORT}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        drop(sender);
        conn.abort();
        if !status.is_success() {
            return Err(ZtunnelError::Status {
                who: who.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| http(format!("no answer within {REQUEST_TIMEOUT:?}")))?
}

/// `GET path` on the admin API inside the named network namespace `netns`.
pub async fn get_in_netns(netns: &str, path: &str) -> Result<Bytes, ZtunnelError> {
    let who = format!("the ztunnel in netns {netns}");
    let ns = mesh_cni::netns::Netns::open_named(netns).map_err(|source| ZtunnelError::Netns {
        netns: netns.to_owned(),
        error: Box::new(source),
    })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT));
    // The socket is created inside the namespace and stays there; I/O then runs on our runtime.
    let connected = ns
        .run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .map_err(|source| ZtunnelError::Netns {
            netns: netns.to_owned(),
            error: Box::new(source),
        })?;
    let connect_err = |error| ZtunnelError::Connect {
        who: who.clone(),
        error,
    };
    let std_stream = connected.map_err(connect_err)?;
    std_stream.set_nonblocking(true).map_err(connect_err)?;
    let stream = tokio::net::TcpStream::from_std(std_stream).map_err(connect_err)?;
    http_get(stream, path, &who).await
}

/// The ztunnel pods of `namespace` as (pod name, node name), sorted by node.
pub async fn ztunnel_pods(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<(String, String)>, ZtunnelError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(ZTUNNEL_SELECTOR))
        .await
        .map_err(|source| ZtunnelError::Api {
            what: format!("list the ztunnel pods ({ZTUNNEL_SELECTOR}) of namespace {namespace}"),
            error: Box::new(source),
        })?;
    let mut found: Vec<(String, String)> = list
        .items
        .into_iter()
        .filter_map(|p| {
            let node = p.spec.and_then(|s| s.node_name)?;
            Some((p.metadata.name?, node))
        })
        .collect();
    found.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(found)
}

/// `GET path` on the admin API of the ztunnel pod of `node` (any ztunnel with `None`), through a
/// port-forward. Returns the node it reached and the body.
pub async fn get_in_cluster(
    client: &kube::Client,
    namespace: &str,
    node: Option<&str>,
    path: &str,
) -> Result<(String, Bytes), ZtunnelError> {
    let pods = ztunnel_pods(client, namespace).await?;
    let Some((pod, node_name)) = pods
        .iter()
        .find(|(_, n)| node.is_none_or(|want| want == n))
        .cloned()
    else {
        let known: Vec<&str> = pods.iter().map(|(_, n)| n.as_str()).collect();
        return Err(ZtunnelError::NoZtunnel {
            node: node.unwrap_or("any node").to_owned(),
            namespace: namespace.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        });
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let who = format!("ztunnel pod {namespace}/{pod} (node {node_name})");
    let pf_err = |detail: String| ZtunnelError::PortForward {
        who: who.clone(),
        detail,
    };
    let mut pf = api
        .portforward(&pod, &[ADMIN_PORT])
        .await
        .map_err(|e| pf_err(e.to_string()))?;
    let stream = pf
        .take_stream(ADMIN_PORT)
        .ok_or_else(|| pf_err(format!("no stream for port {ADMIN_PORT}")))?;
    let body = http_get(stream, path, &who).await?;
    // The forwarder's task ends with the runtime; its result does not change the answer we have.
    drop(pf);
    Ok((node_name, body))
}
