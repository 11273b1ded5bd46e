//! The proxy side of the config stream: holds the resources received (name -> version, value), applies each
//! response all or nothing through a sink (ACK when the sink accepts the new config, NACK with the reason when it
//! rejects it: the proxy keeps its last good config), and reconnects with backoff, announcing what it holds so
//! control resends only what changed meanwhile. While control is unreachable the last config stays in force.
//! The client accepts responses in parts (`more`): parts are held and answered at once, and applied together
//! with the last one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_api::SnapshotParts;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::convert::{self, Value};
use crate::pb::{self, config_discovery_client::ConfigDiscoveryClient};

/// First delay before reconnecting; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A complete config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// Workloads, services, policies.
    pub parts: SnapshotParts,
    /// Waypoint (L7) objects as Kubernetes JSON by resource name (empty for ztunnels).
    pub l7_objects: BTreeMap<String, String>,
}

/// Where configs go. The client keeps only the versions of what it received: each response is applied to the
/// sink's current config (so the proxy holds one copy of its config, not two).
pub trait ConfigSink: Send + Sync + 'static {
    /// The config in force (what the next response applies to).
    fn current(&self) -> Received;
    /// Puts a complete config in force; `Err` rejects it (the reason is sent back as NACK) and the current one
    /// stays.
    fn apply(&self, config: Received) -> Result<(), String>;
}

/// A shared sink.
pub type Sink = Arc<dyn ConfigSink>;

/// Errors of one stream attempt.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The token file could not be read.
    #[error("cannot read token file {0}: {1}")]
    Token(PathBuf, std::io::Error),
    /// The gRPC call failed.
    #[error("config stream: {0}")]
    Status(#[from] tonic::Status),
    /// Control closed the stream.
    #[error("config stream closed by control")]
    Closed,
}

/// The config stream client of one proxy.
pub struct ConfigClient {
    channel: Channel,
    token_file: PathBuf,
    node: String,
    kind: String,
    /// Versions of the resources in force, by name.
    held: BTreeMap<String, String>,
    /// Parts received of a response whose last part has not arrived yet (`more`).
    parts: Vec<pb::ConfigResponse>,
}

impl ConfigClient {
    /// A client for the proxy `kind` on `node`, authenticating with the token in `token_file` (re-read at every
    /// connection, so rotated tokens are picked up).
    pub fn new(channel: Channel, token_file: PathBuf, node: String, kind: &str) -> Self {
        Self {
            channel,
            token_file,
            node,
            kind: kind.to_string(),
            held: BTreeMap::new(),
            parts: Vec::new(),
        }
    }

    /// Runs until `stop`, reconnecting after errors.
    pub async fn run(mut self, sink: Sink, stop: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.stream_once(&sink, &mut backoff) => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, retry_in = ?backoff, "config stream interrupted; keeping the last config");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn stream_once(
        &mut self,
        sink: &Sink,
        backoff: &mut Duration,
    ) -> Result<(), StreamError> {
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| StreamError::Token(self.token_file.clone(), e))?;
        let (tx, rx) = mpsc::channel::<pb::ConfigRequest>(4);
        let first = pb::ConfigRequest {
            node: self.node.clone(),
            kind: self.kind.clone(),
            initial_versions: self
                .held
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            accepts_parts: true,
            ..Default::default()
        };
        // The receiver is alive until the request stream is dropped below.
        let _ = tx.send(first).await;
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let req = crate::with_token(tonic::Request::new(outbound), &token)?;
        let mut inbound = ConfigDiscoveryClient::new(self.channel.clone())
            .stream(req)
            .await?
            .into_inner();
        tracing::info!(held = self.held.len(), "config stream connected");
        // Parts of a response cut by a broken stream are not applied.
        self.parts.clear();
        while let Some(resp) = inbound.message().await? {
            *backoff = MIN_BACKOFF;
            let nonce = resp.nonce.clone();
            let error = if resp.more {
                // Received, applied with the last part.
                self.parts.push(resp);
                String::new()
            } else {
                let resp = join_parts(std::mem::take(&mut self.parts), resp);
                self.apply_logged(&resp, sink)
            };
            let ack = pb::ConfigRequest {
                response_nonce: nonce,
                error,
                ..Default::default()
            };
            if tx.send(ack).await.is_err() {
                break;
            }
        }
        Err(StreamError::Closed)
    }

    /// Applies `resp`; the NACK reason, or empty.
    fn apply_logged(&mut self, resp: &pb::ConfigResponse, sink: &Sink) -> String {
        match self.apply(resp, sink) {
            Ok(()) => String::new(),
            Err(e) => {
                tracing::error!(version = %resp.system_version, error = %e, "config rejected (NACK); keeping the last good config");
                e
            }
        }
    }

    fn apply(&mut self, resp: &pb::ConfigResponse, sink: &Sink) -> Result<(), String> {
        let decoded: Vec<(&str, Value)> = resp
            .resources
            .iter()
            .map(|r| convert::decode(r).map(|v| (r.name.as_str(), v)))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let base = sink.current();
        // The sink's copy is taken apart, not cloned again: at most the old and the new config exist at once.
        let mut values: BTreeMap<String, Value> = convert::into_values(base.parts).collect();
        let mut l7_objects = base.l7_objects;
        for name in &resp.removed {
            values.remove(name);
            l7_objects.remove(name);
        }
        for (name, value) in decoded {
            match value {
                Value::L7Object(j) => {
                    l7_objects.insert(name.to_string(), j);
                }
                other => {
                    values.insert(name.to_string(), other);
                }
            }
        }
        let mut parts = SnapshotParts {
            root_namespace: resp.root_namespace.clone(),
            ..Default::default()
        };
        for v in values.into_values() {
            match v {
                Value::Workload(w) => parts.workloads.push(w),
                Value::Service(s) => parts.services.push(s),
                Value::AuthorizationPolicy(p) => parts.authorization_policies.push(p),
                Value::PeerAuthentication(p) => parts.peer_authentications.push(p),
                Value::L7Object(_) => {}
            }
        }
        sink.apply(Received { parts, l7_objects })?;
        tracing::info!(
            version = %resp.system_version,
            changed = resp.resources.len(),
            removed = resp.removed.len(),
            "config applied (ACK)"
        );
        for name in &resp.removed {
            self.held.remove(name);
        }
        for r in &resp.resources {
            self.held.insert(r.name.clone(), r.version.clone());
        }
        Ok(())
    }
}

/// One response from the parts received before `last` and `last` itself.
fn join_parts(parts: Vec<pb::ConfigResponse>, mut last: pb::ConfigResponse) -> pb::ConfigResponse {
    if parts.is_empty() {
        return last;
    }
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    for p in parts {
        resources.extend(p.resources);
        removed.extend(p.removed);
    }
    resources.append(&mut last.resources);
    removed.append(&mut last.removed);
    last.resources = resources;
    last.removed = removed;
    last
}
