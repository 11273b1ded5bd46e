//! One config stream per proxy.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use mesh_xds::convert::{self, Value};
use mesh_xds::pb::{self, config_discovery_server::ConfigDiscovery};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::view::{self, Subscriber};
use crate::auth::{Authenticator, Caller};
use crate::index::{Entry, Index, Resource};
use crate::store::Store;

/// The config stream service.
pub struct ConfigService {
    store: Arc<Store>,
    auth: Arc<dyn Authenticator>,
    ztunnel: (String, String),
    full: Arc<tokio::sync::Semaphore>,
}

/// How many full comparisons (first responses after a connect, or after a NACK) are built and in flight at
/// once. A first response carries the whole mesh (~11k resources, several MB as messages for 10k pods): when
/// every proxy reconnects together, building them all at once multiplies control's peak memory (and the heap it
/// keeps afterwards) by the number of proxies; in turns, it is a few of them. Released at the proxy's answer.
pub const MAX_FULL_RESPONSES: usize = 4;
/// Longest a stream keeps its turn waiting for the proxy's answer (a proxy that never answers must not stall
/// the others).
pub const FULL_RESPONSE_TURN: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest part of a response, in encoded bytes (give or take one resource), for proxies that accept parts. The
/// gRPC encoder of a stream keeps a buffer as large as the largest message it ever sent for the stream's whole
/// life: a whole-mesh response (~1.6 MB at 10k pods) would stay allocated once per proxy (157 MiB of control's
/// heap with 100 ztunnels); in parts it is this much per proxy.
pub const MAX_PART_BYTES: usize = 64 * 1024;

impl ConfigService {
    /// Serves `store`'s index to ztunnels (`ztunnel` = their namespace and service account; the token must be
    /// bound to the node they name) and waypoints (the service account named after their Gateway).
    pub fn new(store: Arc<Store>, auth: Arc<dyn Authenticator>, ztunnel: (String, String)) -> Self {
        Self {
            store,
            auth,
            ztunnel,
            full: Arc::new(tokio::sync::Semaphore::new(MAX_FULL_RESPONSES)),
        }
    }
}

impl ConfigService {
    /// Who the stream serves, if `caller` may subscribe as `first` asks.
    fn subscriber(&self, caller: &Caller, first: &pb::ConfigRequest) -> Result<Subscriber, Status> {
        let who = format!("{}/{}", caller.namespace, caller.service_account);
        match first.kind.as_str() {
            mesh_xds::KIND_ZTUNNEL => {
                if (caller.namespace.as_str(), caller.service_account.as_str())
                    != (self.ztunnel.0.as_str(), self.ztunnel.1.as_str())
                {
                    return Err(Status::permission_denied(format!(
                        "{who} may not subscribe as a ztunnel (only {}/{})",
                        self.ztunnel.0, self.ztunnel.1
                    )));
                }
                if caller.node.as_deref() != Some(first.node.as_str()) {
                    return Err(Status::permission_denied(format!(
                        "the token is bound to node {:?}, the stream asks for node {:?}",
                        caller.node, first.node
                    )));
                }
                Ok(Subscriber::Node(first.node.clone()))
            }
            mesh_xds::KIND_WAYPOINT => {
                let Some((ns, name)) = first.node.split_once('/') else {
                    return Err(Status::invalid_argument(
                        "a waypoint subscribes as <namespace>/<gateway name>",
                    ));
                };
                // The deployer gives each waypoint the service account named after its Gateway.
                if (caller.namespace.as_str(), caller.service_account.as_str()) != (ns, name) {
                    return Err(Status::permission_denied(format!(
                        "{who} may not subscribe as waypoint {ns}/{name} (its service account is {ns}/{name})"
                    )));
                }
                Ok(Subscriber::Waypoint(ns.to_string(), name.to_string()))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown proxy kind {other:?} (ztunnel or waypoint)"
            ))),
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigService {
    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        req: Request<Streaming<pb::ConfigRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = crate::auth::caller(&*self.auth, req.metadata()).await?;
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream ended before the first request"))?;
        let sub = self.subscriber(&caller, &first)?;
        let (tx, rx) = mpsc::channel(2);
        let sent = sent_from(first.initial_versions);
        tracing::info!(subscriber = ?sub, held = sent.len(), parts = first.accepts_parts, "proxy subscribed");
        let full = self.full.clone();
        let part_bytes = first.accepts_parts.then_some(MAX_PART_BYTES);
        tokio::spawn(session(
            self.store.clone(),
            full,
            sub,
            sent,
            (inbound, tx),
            part_bytes,
        ));
        let out =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        Ok(Response::new(Box::pin(out)))
    }
}

/// Sends responses to one proxy until it goes away.
async fn session(
    store: Arc<Store>,
    full: Arc<tokio::sync::Semaphore>,
    sub: Subscriber,
    mut sent: Sent,
    (mut inbound, tx): (
        Streaming<pb::ConfigRequest>,
        mpsc::Sender<Result<pb::ConfigResponse, Status>>,
    ),
    part_bytes: Option<usize>,
) {
    // Never serve a partial view (e.g. pods without their policies).
    tokio::select! {
        _ = store.wait_synced() => {}
        _ = tx.closed() => return,
    }
    let mut seq_rx = store.subscribe();
    let mut last_seq = None;
    let (mut nonce, mut pending, mut first) = (0u64, None::<String>, true);
    // What `sent` held before the response in flight, to undo it on NACK.
    let mut undo = Undo::new();
    // After a NACK, nothing is resent until something changes (no tight NACK loop).
    let mut wait_change = false;
    // Held from building a full comparison until the proxy answers it (or its turn ends).
    let mut permit = None;
    let mut turn_ends: Option<tokio::time::Instant> = None;
    // Parts of the response in flight not sent yet (each is sent once the proxy answered the one before).
    let mut parts = std::collections::VecDeque::new();
    loop {
        if pending.is_none() && parts.is_empty() && !wait_change {
            if last_seq.is_none() && permit.is_none() {
                permit = tokio::select! {
                    p = full.clone().acquire_owned() => p.ok(),
                    _ = tx.closed() => return,
                };
            }
            seq_rx.borrow_and_update();
            undo.clear();
            let resp = {
                let index = store.lock();
                delta(&index, &sub, &mut sent, &mut undo, &mut last_seq, first)
            };
            if let Some(resp) = resp {
                tracing::debug!(subscriber = ?sub, version = %resp.system_version, changed = resp.resources.len(), removed = resp.removed.len(), "sending config");
                parts = match part_bytes {
                    Some(max) => split(resp, max),
                    None => [resp].into(),
                };
                first = false;
            } else {
                permit = None;
            }
        }
        if pending.is_none()
            && let Some(mut part) = parts.pop_front()
        {
            nonce += 1;
            part.nonce = nonce.to_string();
            pending = Some(part.nonce.clone());
            if tx.send(Ok(part)).await.is_err() {
                return;
            }
            turn_ends = permit
                .is_some()
                .then(|| tokio::time::Instant::now() + FULL_RESPONSE_TURN);
        }
        let turn = async {
            match turn_ends {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = turn => {
                permit = None;
                turn_ends = None;
            }
            changed = seq_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                wait_change = false;
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) if pending.as_deref() == Some(m.response_nonce.as_str()) && m.error.is_empty()
                    && !parts.is_empty() => {
                    // A part was received; the next one goes.
                    pending = None;
                }
                Ok(Some(m)) if pending.as_deref() == Some(m.response_nonce.as_str()) => {
                    parts.clear();
                    if m.error.is_empty() {
                        tracing::debug!(subscriber = ?sub, nonce = %m.response_nonce, "ACK");
                    } else {
                        tracing::warn!(subscriber = ?sub, nonce = %m.response_nonce, error = %m.error, "NACK: the proxy keeps its last good config");
                        // The proxy does not have what was sent: forget it, and compare everything at the next
                        // change so the rejected resources go again with it.
                        for (name, prev) in undo.drain() {
                            match prev {
                                Some(v) => sent.insert(name, v),
                                None => sent.remove(&name),
                            };
                        }
                        last_seq = None;
                        wait_change = true;
                    }
                    // Its capacity is that of the largest response (the whole mesh after a connect): give it back.
                    undo = Undo::new();
                    pending = None;
                    if let Some(p) = permit.take() {
                        drop(p);
                        // The last full comparison in flight is done: return the heap its responses used.
                        if full.available_permits() == MAX_FULL_RESPONSES {
                            crate::store::release_free_heap();
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::info!(subscriber = ?sub, "ztunnel disconnected");
                    return;
                }
                Err(e) => {
                    tracing::info!(subscriber = ?sub, error = %e, "ztunnel stream ended");
                    return;
                }
            },
        }
    }
}

/// `resp` as parts of about `max` encoded bytes of resources each (at least one resource per part; removals go
/// with the last part), every part but the last marked `more`.
fn split(
    mut resp: pb::ConfigResponse,
    max: usize,
) -> std::collections::VecDeque<pb::ConfigResponse> {
    use prost::Message as _;
    let mut out = std::collections::VecDeque::new();
    let resources = std::mem::take(&mut resp.resources);
    let mut part: Vec<pb::Resource> = Vec::new();
    let mut bytes = 0;
    let empty = |resources| pb::ConfigResponse {
        system_version: resp.system_version.clone(),
        nonce: String::new(),
        resources,
        removed: Vec::new(),
        root_namespace: resp.root_namespace.clone(),
        more: true,
    };
    for r in resources {
        let len = r.encoded_len();
        if !part.is_empty() && bytes + len > max {
            out.push_back(empty(std::mem::take(&mut part)));
            bytes = 0;
        }
        bytes += len;
        part.push(r);
    }
    resp.resources = part;
    resp.more = false;
    out.push_back(resp);
    out
}

/// What a stream has sent (and the proxy ACKed or has not answered yet): resource name -> version (the content
/// hash). Names are the index's shared ones, so a stream's record costs ~24 bytes per resource.
pub type Sent = HashMap<Arc<str>, u64>;
/// What `Sent` held before the response in flight (`None`: absent), to undo it on NACK.
pub type Undo = HashMap<Arc<str>, Option<u64>>;

/// Version that matches no content hash: stands for versions a proxy announces that control never wrote.
const FOREIGN_VERSION: u64 = u64::MAX;

/// The wire form of a version.
fn version_string(hash: u64) -> String {
    format!("{hash:016x}")
}

/// `Sent` from the versions a reconnecting proxy announces.
fn sent_from(initial: HashMap<String, String>) -> Sent {
    initial
        .into_iter()
        .map(|(name, v)| {
            let v = u64::from_str_radix(&v, 16).unwrap_or(FOREIGN_VERSION);
            (Arc::from(name), v)
        })
        .collect()
}

/// What `sub` needs that it does not have (per `sent`), updating `sent`. `None` when nothing changed (the first
/// response is always sent, so a proxy knows it is in sync).
pub fn delta(
    index: &Index,
    sub: &Subscriber,
    sent: &mut Sent,
    undo: &mut Undo,
    last_seq: &mut Option<u64>,
    force: bool,
) -> Option<pb::ConfigResponse> {
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    // The scoped set (policies, L7 objects) is recomputed only when a change can affect it.
    let mut rescope = true;
    let changed: Vec<String> = match last_seq.and_then(|s| index.changes_since(s)) {
        Some(changed) => {
            rescope = changed.iter().any(|n| view::affects_scope(index, sub, n));
            changed.into_iter().filter(|n| view::is_global(n)).collect()
        }
        None => {
            let mut all: Vec<String> = index
                .resources()
                .map(|(n, _)| n.clone())
                .filter(|n| view::is_global(n))
                .collect();
            all.extend(
                sent.keys()
                    .filter(|n| view::is_global(n) && index.resource(n).is_none())
                    .map(|n| n.to_string()),
            );
            all
        }
    };
    let mut send = |e: &Entry, sent: &mut Sent, undo: &mut Undo| {
        if sent.get(&*e.name) != Some(&e.hash) {
            let version = version_string(e.hash);
            resources.push(convert::encode(&e.name, &version, &value(&e.resource)));
            let prev = sent.insert(e.name.clone(), e.hash);
            undo.entry(e.name.clone()).or_insert(prev);
        }
    };
    for name in changed {
        match index.resource(&name) {
            Some(e) => send(e, sent, undo),
            None => {
                if let Some((key, prev)) = sent.remove_entry(name.as_str()) {
                    undo.entry(key).or_insert(Some(prev));
                    removed.push(name);
                }
            }
        }
    }
    if rescope {
        let wanted = view::scoped(index, sub);
        for e in wanted.values() {
            send(e, sent, undo);
        }
        let stale: Vec<Arc<str>> = sent
            .keys()
            .filter(|n| !view::is_global(n) && !wanted.contains_key(&***n))
            .cloned()
            .collect();
        for n in stale {
            let prev = sent.remove(&n);
            removed.push(n.to_string());
            undo.entry(n).or_insert(prev);
        }
    }
    *last_seq = Some(index.seq());
    if resources.is_empty() && removed.is_empty() && !force {
        return None;
    }
    Some(pb::ConfigResponse {
        system_version: index.seq().to_string(),
        nonce: String::new(),
        resources,
        removed,
        root_namespace: index.options().root_namespace.clone(),
        more: false,
    })
}

fn value(r: &Resource) -> Value {
    match r {
        Resource::Workload(w) => Value::Workload(w.clone()),
        Resource::Service(s) => Value::Service(s.clone()),
        Resource::AuthorizationPolicy(p) => Value::AuthorizationPolicy(p.clone()),
        Resource::PeerAuthentication(p) => Value::PeerAuthentication(p.clone()),
        Resource::L7Object(j) => Value::L7Object(j.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(i: usize) -> pb::Resource {
        pb::Resource {
            name: format!("l7/httproute/ns/r-{i}"),
            version: version_string(i as u64),
            kind: Some(pb::resource::Kind::L7ObjectJson("x".repeat(1000))),
        }
    }

    #[test]
    fn a_large_response_goes_in_bounded_parts_with_removals_last() {
        let resp = pb::ConfigResponse {
            system_version: "7".into(),
            resources: (0..100).map(resource).collect(),
            removed: vec!["workload/gone".into()],
            root_namespace: "istio-system".into(),
            ..Default::default()
        };
        let parts: Vec<_> = split(resp, 10_000).into();
        assert!(parts.len() >= 10, "{} parts", parts.len());
        let (last, rest) = parts.split_last().expect("parts");
        assert!(rest.iter().all(|p| p.more && p.removed.is_empty()));
        assert!(!last.more);
        assert_eq!(last.removed, ["workload/gone"]);
        for p in &parts {
            use prost::Message as _;
            let bytes: usize = p.resources.iter().map(|r| r.encoded_len()).sum();
            assert!(bytes <= 10_000, "a part of {bytes} bytes");
            assert_eq!(
                (p.system_version.as_str(), p.root_namespace.as_str()),
                ("7", "istio-system")
            );
        }
        let names: Vec<String> = parts
            .iter()
            .flat_map(|p| p.resources.iter().map(|r| r.name.clone()))
            .collect();
        let want: Vec<String> = (0..100).map(|i| resource(i).name).collect();
        assert_eq!(names, want, "every resource once, in order");
        // A small response is one part.
        let one = split(
            pb::ConfigResponse {
                resources: vec![resource(1)],
                ..Default::default()
            },
            MAX_PART_BYTES,
        );
        assert_eq!(one.len(), 1);
        assert!(!one[0].more);
    }
}
