//! The startup reconcile: load the records of known sandboxes, wait for the source's initial
//! state, re-apply the rules of pods that must be enrolled (and remove stale ones), fix the
//! node's SNAT set, and seed the handoff server so ztunnel's first snapshot names them all.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use mesh_api::handoff::PodInfo;

use super::cluster::Cluster;
use super::enforce::Enforcer;
use super::metrics::Metrics;
use super::reconciler::{Reconciler, Settings, Tracked};
use super::records::RecordStore;
use super::source::{EventSink, PodSource, kube::KubeSource, local::LocalSource};
use super::{AgentConfig, AgentError, Msg, SourceConfig};
use crate::handoff_server::HandoffServer;
use crate::netns::Netns;
use crate::rules::{self, Backend};

/// Name of the local source's status file in the state dir.
pub const LOCAL_STATUS_FILE: &str = "redirection.json";

pub(super) fn prepare(
    config: &AgentConfig,
    tx: &Sender<Msg>,
    rx: &Receiver<Msg>,
    metrics: Metrics,
) -> Result<Reconciler, AgentError> {
    let node = Netns::current()?;
    let backend = match config.backend {
        Some(b) => b,
        None => Backend::detect()?,
    };
    std::fs::create_dir_all(&config.state_dir).map_err(|source| {
        super::records::RecordsError::Write {
            path: config.state_dir.clone(),
            source,
        }
    })?;
    let store = RecordStore::open(&config.state_dir)?;
    let source: Arc<dyn PodSource> = match &config.source {
        SourceConfig::Local { state_file, poll } => Arc::new(LocalSource::new(
            state_file.clone(),
            config.state_dir.join(LOCAL_STATUS_FILE),
            config.node_name.clone(),
            *poll,
        )),
        SourceConfig::Kubernetes(api) => Arc::new(KubeSource::new(
            config.node_name.clone(),
            api.as_deref().cloned(),
        )?),
        SourceConfig::Custom(s) => s.clone(),
    };
    source.start(EventSink::new(tx.clone()))?;
    let cluster = initial_state(rx, config.sync_timeout);

    let mut tracked = BTreeMap::new();
    for record in store.load_all()? {
        let uid = record.uid.clone();
        let key = format!("{}/{}", record.namespace, record.name);
        let netns = match Netns::open_path(record.netns.clone(), key.clone()) {
            Ok(ns) => ns,
            Err(err) => {
                tracing::info!(pod = %key, %err, "sandbox of a recorded pod is gone; forgetting it");
                store.remove(&uid)?;
                continue;
            }
        };
        let enrolled = match cluster.decision(&uid) {
            Some(d) => d.enrolled(),
            None if cluster.is_synced() => {
                tracing::info!(pod = %key, "recorded pod no longer exists; removing its capture");
                clean(&netns, backend, &key);
                store.remove(&uid)?;
                continue;
            }
            // Unknown because the source is not in sync: keep what is installed.
            None => rules::check(&netns, backend, &config.redirect).is_ok_and(|r| !r.is_absent()),
        };
        let capture = cluster
            .pod(&uid)
            .map_or(config.redirect, |p| p.capture(config.redirect));
        tracked.insert(
            uid,
            Tracked {
                record,
                netns,
                enrolled,
                capture,
            },
        );
    }

    let mut seed: Vec<(PodInfo, OwnedFd)> = Vec::new();
    for (uid, t) in tracked.iter_mut() {
        let key = t.key();
        if !t.enrolled {
            clean(&t.netns, backend, &key);
            continue;
        }
        if let Err(err) = rules::apply(&t.netns, backend, &t.capture) {
            tracing::warn!(pod = %key, %err, "re-applying rules at startup failed; the self-check retries");
        }
        let info = PodInfo {
            uid: uid.clone(),
            name: t.record.name.clone(),
            namespace: t.record.namespace.clone(),
            service_account: cluster
                .pod(uid)
                .map(|p| p.service_account().to_string())
                .unwrap_or_else(|| "default".into()),
        };
        match t.netns.try_clone() {
            Ok(fd) => seed.push((info, fd.into_fd())),
            Err(err) => tracing::warn!(pod = %key, %err, "cannot hand the pod to ztunnel"),
        }
        if let Some(pod) = cluster.pod(uid) {
            source.set_redirection(pod, true);
        }
    }
    tracing::info!(
        tracked = tracked.len(),
        enrolled = seed.len(),
        synced = cluster.is_synced(),
        "startup reconcile done"
    );
    let handoff = HandoffServer::bind_with_pods(&config.handoff_socket, config.handoff, seed)?;
    let enforcer = Enforcer::new(backend, config.redirect, node, handoff);
    let ips: Vec<std::net::IpAddr> = tracked
        .values()
        .filter(|t| t.enrolled)
        .flat_map(|t| t.record.ips.iter().copied())
        .collect();
    if let Err(err) = enforcer.sync_host(&ips) {
        tracing::warn!(%err, "cannot sync the host probe SNAT set at startup; the self-check retries");
    }
    Ok(Reconciler::new(
        cluster,
        tracked,
        enforcer,
        store,
        source,
        metrics,
        Settings {
            pod_wait: config.pod_wait,
            check_interval: config.check_interval,
            proc_root: config.proc_root.clone(),
        },
    ))
}

/// Applies source events until the source is in sync or `timeout` passes.
fn initial_state(rx: &Receiver<Msg>, timeout: std::time::Duration) -> Cluster {
    let mut cluster = Cluster::default();
    let deadline = Instant::now() + timeout;
    while !cluster.is_synced() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Msg::Source(event)) => {
                cluster.apply(event);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    ?timeout,
                    "pod source not in sync; reconciling with what is known"
                );
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    cluster
}

fn clean(netns: &Netns, backend: Backend, key: &str) {
    if let Err(err) = rules::remove(netns, backend) {
        tracing::warn!(pod = %key, %err, "removing stale rules failed");
    }
}
