//! The set of pods this ztunnel serves and their listeners. Adding a pod opens 15001/15006/15008 inside its
//! network namespace; deleting it closes them (open connections finish on their own).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mesh_api::handoff::PodInfo;
use std::os::fd::OwnedFd;
use tokio_util::sync::CancellationToken;

use crate::proxy::{self, PodContext, Proxy};
use crate::socket::PodNetns;

use super::reaper::NetnsWatch;

/// Errors changing the pod set.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The pod's network namespace could not be used (did the pod go away?).
    #[error("pod {0}: cannot use its network namespace: {1}")]
    Netns(String, std::io::Error),
    /// A listener could not be opened inside the pod.
    #[error("pod {0}: cannot open listener {1}: {2}")]
    Listen(String, std::net::SocketAddr, std::io::Error),
    /// Keep or Del for a pod ztunnel does not have.
    #[error("pod {0} is not known to this ztunnel")]
    Unknown(String),
    /// The pod has a name or service account that does not form a valid identity.
    #[error("pod {0}: invalid identity: {1}")]
    Identity(String, String),
}

struct PodHandle {
    ctx: Arc<PodContext>,
    stop: CancellationToken,
    netns: NetnsWatch,
}

/// All pods handed to this ztunnel.
pub struct PodManager {
    proxy: Arc<Proxy>,
    pods: Mutex<HashMap<String, PodHandle>>,
}

impl PodManager {
    /// An empty set serving through `proxy`.
    pub fn new(proxy: Arc<Proxy>) -> Self {
        Self {
            proxy,
            pods: Mutex::default(),
        }
    }

    /// Starts serving a pod. Adding a pod that is already served keeps the existing listeners.
    pub async fn add(&self, info: PodInfo, netns: OwnedFd) -> Result<(), PodError> {
        if self.lock().contains_key(&info.uid) {
            tracing::debug!(uid = %info.uid, "pod already served");
            return Ok(());
        }
        let uid = info.uid.clone();
        let netns_inode =
            super::reaper::inode_of(&netns).map_err(|e| PodError::Netns(uid.clone(), e))?;
        let worker = PodNetns::open(std::os::fd::AsFd::as_fd(&netns))
            .map_err(|e| PodError::Netns(uid.clone(), e.into()))?;
        let ctx = PodContext::new(self.proxy.clone(), info, worker)
            .map_err(|e| PodError::Identity(uid.clone(), e))?;
        let ctx = Arc::new(ctx);
        prefetch_certificate(&ctx);
        let listeners = proxy::listeners::open(&ctx)
            .map_err(|(addr, e)| PodError::Listen(uid.clone(), addr, e))?;
        let stop = self.proxy.drain.child_token();
        proxy::listeners::spawn(ctx.clone(), listeners, stop.clone());
        tracing::info!(uid = %uid, pod = %ctx.info.name, namespace = %ctx.info.namespace, "pod added");
        self.lock().insert(
            uid,
            PodHandle {
                ctx,
                stop,
                netns: NetnsWatch::new(netns_inode),
            },
        );
        self.proxy.metrics_pods(self.len());
        Ok(())
    }

    /// Confirms a pod is still enrolled (snapshot replay).
    pub fn keep(&self, uid: &str) -> Result<(), PodError> {
        if self.lock().contains_key(uid) {
            Ok(())
        } else {
            Err(PodError::Unknown(uid.into()))
        }
    }

    /// Stops serving a pod: closes its listeners.
    pub fn del(&self, uid: &str) -> Result<(), PodError> {
        let handle = self
            .lock()
            .remove(uid)
            .ok_or_else(|| PodError::Unknown(uid.into()))?;
        handle.stop.cancel();
        tracing::info!(uid, pod = %handle.ctx.info.name, "pod removed");
        self.proxy.metrics_pods(self.len());
        Ok(())
    }

    /// Drops every pod not in `keep` (end of a snapshot).
    pub fn retain(&self, keep: &HashSet<String>) {
        let gone: Vec<String> = self
            .lock()
            .keys()
            .filter(|u| !keep.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            // Removal of a pod that is known cannot fail.
            let _ = self.del(&uid);
        }
    }

    /// Records a scan of the namespaces in use and returns the pods whose namespace it found gone
    /// (see [`NetnsWatch::vanished`]).
    pub fn vanished(&self, in_use: &HashSet<u64>) -> Vec<String> {
        self.lock()
            .iter_mut()
            .filter_map(|(uid, h)| h.netns.vanished(in_use).then(|| uid.clone()))
            .collect()
    }

    /// Number of pods served.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no pod is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pods served, for the config dump.
    pub fn dump(&self) -> serde_json::Value {
        let mut pods: Vec<_> = self
            .lock()
            .values()
            .map(|h| {
                serde_json::json!({
                    "uid": h.ctx.info.uid,
                    "name": h.ctx.info.name,
                    "namespace": h.ctx.info.namespace,
                    "identity": h.ctx.identity.to_string(),
                    "netnsTracked": h.netns.tracked(),
                })
            })
            .collect();
        pods.sort_by_key(|v| v["uid"].as_str().map(str::to_owned));
        serde_json::Value::Array(pods)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodHandle>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gets the pod's certificate in the background, so the pod's first connection does not wait for
/// a CSR round trip to the CA on a data-path worker (a failure is retried by that connection).
fn prefetch_certificate(ctx: &Arc<PodContext>) {
    let (certs, id) = (ctx.proxy.certs.clone(), ctx.identity.clone());
    tokio::spawn(async move {
        if let Err(e) = certs.ready(&id).await {
            tracing::warn!(identity = %id, error = %e, "cannot get the pod's certificate yet");
        }
    });
}
