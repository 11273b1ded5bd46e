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
    synced: watch::Sender<bool>,
    /// Counts applied updates, also those that changed objects but no resource (status writers need them: an
    /// invalid update of a route changes its status, not what proxies get).
    updates: watch::Sender<u64>,
}

impl Store {
    /// An empty store translating with `opts`.
    pub fn new(opts: Options) -> Arc<Self> {
        Arc::new(Self {
            index: Mutex::new(Index::new(opts)),
            seq: watch::Sender::new(0),
            synced: watch::Sender::new(false),
            updates: watch::Sender::new(0),
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

    /// A receiver that sees every applied update (objects may have changed even when no resource did).
    pub fn subscribe_updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Waits until the source has delivered a complete view once.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as the store.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Applies one update; returns how many resources changed.
    pub fn apply(&self, update: Update) -> usize {
        let resync = matches!(update, Update::Resync(_) | Update::ResyncKind(..));
        let (changed, seq) = {
            let mut index = self.lock();
            let changed = match update {
                Update::Resync(objects) => index.replace_all_shared(objects),
                Update::ResyncKind(kind, objects) => index.replace_kind(kind, objects),
                Update::Changes(changes) => index.apply(changes),
                Update::Synced => {
                    self.synced.send_replace(true);
                    Vec::new()
                }
            };
            (changed.len(), index.seq())
        };
        if resync {
            release_free_heap();
        }
        if changed > 0 {
            self.seq.send_replace(seq);
        }
        self.updates.send_modify(|n| *n += 1);
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

/// Gives freed heap back to the system, after a full resync (parsed documents, objects compared) and once the
/// full responses of connecting proxies are sent: glibc keeps freed memory in its arenas, so without this
/// control's RSS stays at the peak of its first sync and of the first responses.
pub(crate) fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
