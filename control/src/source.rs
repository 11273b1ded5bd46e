//! Where objects come from: a directory of YAML files ([`files`], local mode and tests) or the Kubernetes API
//! (not built yet). Every source sends [`Update`]s to one channel; [`crate::store::Store`] applies them.

pub mod files;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::index::Change;
use crate::objects::Object;

/// What a source reports.
#[derive(Debug)]
pub enum Update {
    /// The complete set of objects now (a list, or a re-read of every file): objects not named are deleted.
    Resync(Vec<Object>),
    /// Individual changes (a watch event).
    Changes(Vec<Change>),
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
