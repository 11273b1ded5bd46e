//! The Kubernetes source: kube-rs watchers on the pods of this node (field selector
//! `spec.nodeName=<node>`) and on namespaces; enrolled pods are annotated
//! `ambient.istio.io/redirection=enabled` with a merge patch.
//!
//! The watchers re-list after a desync; pods missing from a re-list are reported deleted.
//! [`SourceEvent::Synced`] is sent once both initial lists are complete.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::{EventSink, PodSource, SourceError};
use crate::agent::model::{
    NamespaceMeta, PodMeta, REDIRECTION_ANNOTATION, REDIRECTION_ENABLED, SourceEvent,
};

/// Field manager name of our patches.
pub const FIELD_MANAGER: &str = "mesh-cni-agent";

/// Pod events from the Kubernetes API; see the module documentation.
pub struct KubeSource {
    node: String,
    config: Option<kube::Config>,
    runtime: tokio::runtime::Runtime,
    client: std::sync::OnceLock<Client>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("node", &self.node)
            .finish()
    }
}

impl KubeSource {
    /// A source for `node`. `config` is the API server to talk to; `None` infers it (in-cluster
    /// service account, else `KUBECONFIG` / `~/.kube/config`).
    pub fn new(node: String, config: Option<kube::Config>) -> Result<Self, SourceError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kube-source")
            .enable_all()
            .build()
            .map_err(|e| SourceError::Start {
                source_name: "kubernetes",
                detail: e.to_string(),
            })?;
        Ok(Self {
            node,
            config,
            runtime,
            client: std::sync::OnceLock::new(),
        })
    }

    fn client(&self) -> Result<Client, SourceError> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let config = match &self.config {
            Some(c) => c.clone(),
            None => self
                .runtime
                .block_on(kube::Config::infer())
                .map_err(|e| SourceError::KubeConfig(e.to_string()))?,
        };
        let _guard = self.runtime.enter();
        let client =
            Client::try_from(config).map_err(|e| SourceError::KubeConfig(e.to_string()))?;
        Ok(self.client.get_or_init(|| client).clone())
    }
}

impl PodSource for KubeSource {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn start(&self, sink: EventSink) -> Result<(), SourceError> {
        let client = self.client()?;
        let synced = Arc::new(AtomicU8::new(0));
        let pods: Api<Pod> = Api::all(client.clone());
        let pod_cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        self.runtime
            .spawn(watch_pods(pods, pod_cfg, sink.clone(), synced.clone()));
        let namespaces: Api<Namespace> = Api::all(client);
        self.runtime
            .spawn(watch_namespaces(namespaces, sink, synced));
        Ok(())
    }

    fn set_redirection(&self, pod: &PodMeta, enabled: bool) {
        let Ok(client) = self.client() else { return };
        let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
        let name = pod.name.clone();
        let value = if enabled {
            serde_json::Value::from(REDIRECTION_ENABLED)
        } else {
            serde_json::Value::Null
        };
        let patch =
            serde_json::json!({"metadata": {"annotations": {REDIRECTION_ANNOTATION: value}}});
        self.runtime.spawn(async move {
            let params = PatchParams::apply(FIELD_MANAGER);
            // Through the status subresource: the agent may patch pods' status, not their spec.
            if let Err(err) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = %name, %err, "cannot annotate the pod");
            }
        });
    }
}

/// Both watchers report here; the second InitDone completes the sync.
fn init_done(synced: &AtomicU8, sink: &EventSink) -> bool {
    if synced.fetch_add(1, Ordering::SeqCst) == 1 {
        return sink.send(SourceEvent::Synced);
    }
    true
}

async fn watch_pods(api: Api<Pod>, cfg: watcher::Config, sink: EventSink, synced: Arc<AtomicU8>) {
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut first = true;
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let ok = match event {
            Ok(Event::Init) => {
                listing = Some(HashSet::new());
                true
            }
            Ok(Event::InitApply(pod)) | Ok(Event::Apply(pod)) => {
                let meta = pod_meta(&pod);
                if let Some(l) = listing.as_mut() {
                    l.insert(meta.uid.clone());
                }
                known.insert(meta.uid.clone());
                sink.send(SourceEvent::Pod(meta))
            }
            Ok(Event::Delete(pod)) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                known.remove(&uid);
                sink.send(SourceEvent::PodDeleted(uid))
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let gone: Vec<String> = known.difference(&listed).cloned().collect();
                let mut ok = true;
                for uid in gone {
                    known.remove(&uid);
                    ok &= sink.send(SourceEvent::PodDeleted(uid));
                }
                if std::mem::take(&mut first) {
                    ok &= init_done(&synced, &sink);
                }
                ok
            }
            Err(err) => {
                tracing::warn!(%err, "pod watch failed; retrying");
                true
            }
        };
        if !ok {
            return;
        }
    }
}

async fn watch_namespaces(api: Api<Namespace>, sink: EventSink, synced: Arc<AtomicU8>) {
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut first = true;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let ok = match event {
            Ok(Event::Init) => {
                listing = Some(HashSet::new());
                true
            }
            Ok(Event::InitApply(ns)) | Ok(Event::Apply(ns)) => {
                let meta = NamespaceMeta {
                    name: ns.metadata.name.unwrap_or_default(),
                    labels: ns.metadata.labels.unwrap_or_default(),
                };
                if let Some(l) = listing.as_mut() {
                    l.insert(meta.name.clone());
                }
                known.insert(meta.name.clone());
                sink.send(SourceEvent::Namespace(meta))
            }
            Ok(Event::Delete(ns)) => {
                let name = ns.metadata.name.unwrap_or_default();
                known.remove(&name);
                sink.send(SourceEvent::NamespaceDeleted(name))
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let gone: Vec<String> = known.difference(&listed).cloned().collect();
                let mut ok = true;
                for name in gone {
                    known.remove(&name);
                    ok &= sink.send(SourceEvent::NamespaceDeleted(name));
                }
                if std::mem::take(&mut first) {
                    ok &= init_done(&synced, &sink);
                }
                ok
            }
            Err(err) => {
                tracing::warn!(%err, "namespace watch failed; retrying");
                true
            }
        };
        if !ok {
            return;
        }
    }
}

/// The agent's view of a Kubernetes pod.
pub fn pod_meta(pod: &Pod) -> PodMeta {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<std::net::IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().filter_map(|i| i.ip.parse().ok()).collect())
        .unwrap_or_default();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|i| i.parse().ok())
    {
        ips.push(ip);
    }
    let phase = status.and_then(|s| s.phase.as_deref());
    PodMeta {
        uid: meta.uid.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        ips,
        terminated: matches!(phase, Some("Succeeded" | "Failed")),
    }
}

#[cfg(test)]
mod tests;
