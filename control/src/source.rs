//! Where objects come from: a directory of YAML files ([`files`], local mode and tests) or the Kubernetes API
//! ([`kube`]). Every source sends [`Update`]s to one channel; [`crate::store::Store`] applies them.

pub mod files;
pub mod kube;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::index::Change;
use crate::objects::{Kind, Object};

/// What a source reports.
#[derive(Debug)]
pub enum Update {
    /// The complete set of objects now (a re-read of every file), shared with the source that keeps them:
    /// objects not named are deleted.
    Resync(Vec<Arc<Object>>),
    /// The complete set of objects of one kind (a re-list): objects of that kind not named are deleted.
    ResyncKind(Kind, Vec<Object>),
    /// Individual changes (a watch event).
    Changes(Vec<Change>),
    /// The source has delivered a complete view once: proxies may be served (never before, so no proxy sees a
    /// partial mesh, e.g. pods without their policies).
    Synced,
}

/// A source of objects: runs until `stop`, sending updates to `tx`.
pub trait Source: Send + 'static {
    /// Starts the source on the current tokio runtime.
    fn spawn(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()>;
}
