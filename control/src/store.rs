//! The shared, live index: sources' updates are applied here, and the config stream waits for new versions.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::index::{Change, Index};
use crate::source::Update;
use crate::translate::Options;

/// The index behind a lock, with a watch of its sequence number.
#[derive(Debug)]
pub struct Store {
    index: Mutex<Index>,
    seq: watch::Sender<u64>,
}

impl Store {
    /// An empty store translating with `opts`.
    pub fn new(opts: Options) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(Index::new(opts)),
            seq: watch::Sender::new(0),
        })
    }

    /// The index, locked. Hold it briefly: sources wait for it.
    pub fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that sees every new sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }

    /// Applies one update; returns how many resources changed.
    pub fn apply(&self, update: Update) -> usize {
        let (changed, seq) = {
            let mut index = self.lock();
            let changed = match update {
                Update::Resync(objects) => index.replace_all(objects),
                Update::Changes(changes) => index.apply(changes),
            };
            (changed.len(), index.seq())
        };
        if changed > 0 {
            self.seq.send_replace(seq);
        }
        changed
    }

    /// Applies individual changes (tests, the deployer's own writes).
    pub fn apply_changes(&self, changes: Vec<Change>) -> usize {
        self.apply(Update::Changes(changes))
    }

    /// Applies updates from `rx` until it closes or `stop` fires.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Update>, stop: CancellationToken) {
        loop {
            let update = tokio::select! {
                _ = stop.cancelled() => return,
                u = rx.recv() => match u { Some(u) => u, None => return },
            };
            let changed = self.apply(update);
            tracing::debug!(changed, "index updated");
        }
    }
}
