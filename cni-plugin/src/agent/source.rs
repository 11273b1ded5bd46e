//! Where the agent learns about pods and namespaces: a [`PodSource`] delivers
//! [`SourceEvent`]s and records the `ambient.istio.io/redirection` annotation of enrolled pods.
//!
//! - [`kube::KubeSource`]: Kubernetes watchers (pods of this node by field selector, all
//!   namespaces); annotates pods through the API.
//! - [`local::LocalSource`]: a cluster-state file written by the local runtime (`meshctl local`)
//!   and by tests; annotations go to a status file next to the agent's state.

use std::sync::mpsc::Sender;

use super::model::{PodMeta, SourceEvent};

pub mod kube;
pub mod local;

/// Errors of starting a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A thread or runtime could not be started.
    #[error("cannot start the {source_name} pod source: {detail}")]
    Start {
        /// Which source.
        source_name: &'static str,
        /// What failed.
        detail: String,
    },
    /// The Kubernetes client could not be configured.
    #[error(
        "cannot configure the Kubernetes client: {0} (in-cluster service account or KUBECONFIG?)"
    )]
    KubeConfig(String),
}

/// Where the source sends events; closed when the agent stops.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Sender<super::Msg>,
}

impl EventSink {
    /// A sink feeding the agent's loop.
    pub(crate) fn new(tx: Sender<super::Msg>) -> Self {
        Self { tx }
    }

    /// Delivers an event; false when the agent is gone (the source should stop).
    pub fn send(&self, event: SourceEvent) -> bool {
        self.tx.send(super::Msg::Source(event)).is_ok()
    }
}

/// A provider of pod and namespace events for one node.
pub trait PodSource: Send + Sync {
    /// A short name for logs (`kubernetes`, `local`).
    fn name(&self) -> &'static str;

    /// Starts delivering events (current state first, then [`SourceEvent::Synced`], then
    /// changes) until `sink` is closed or the source is dropped.
    fn start(&self, sink: EventSink) -> Result<(), SourceError>;

    /// Records whether `pod` is enrolled (the `ambient.istio.io/redirection=enabled`
    /// annotation). Best effort and non-blocking: failures are logged.
    fn set_redirection(&self, pod: &PodMeta, enabled: bool);
}
