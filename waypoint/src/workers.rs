//! The data-path workers: N threads, each running its own single-threaded tokio runtime with
//! its own HBONE listener (`SO_REUSEPORT`: the kernel spreads the tunnels' connections over the
//! workers) and its own upstream pools ([`crate::upstream::Upstreams`]).
//!
//! A request then lives on one thread from the downstream HBONE frame to the upstream one and
//! back. With the work-stealing runtime the tasks of one request (downstream HTTP/2 connection,
//! HTTP/1.1 server, upstream HTTP/1.1 client, upstream HTTP/2 connection) woke each other across
//! threads: ~6 context switches and ~1.4 futex calls per request at 1,000 requests/s; with the
//! workers ~3.4 (2 with the benchmark's spinners) and ~15 % less CPU per request
//! (benches/README.md). This is ztunnel's (and Envoy's) worker model.
//!
//! The control side (config sources, certificates, admin, metrics) stays on the main runtime.

use std::cell::Cell;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// Index of the worker this thread is (0 outside workers).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker running the caller; 0 outside the workers.
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Errors starting the workers.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The runtime of a worker could not be built.
    #[error("cannot build the runtime of data-path worker {0}: {1}")]
    Runtime(usize, std::io::Error),
    /// The thread of a worker could not be started.
    #[error("cannot start the thread of data-path worker {0} (check thread limits): {1}")]
    Thread(usize, std::io::Error),
}

/// The running workers; dropping this stops them (what runs on them is cancelled).
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// Workers used when `--workers` is 0: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Workers {
    /// Starts `n` workers (at least one).
    pub fn start(n: usize) -> Result<Self, WorkerError> {
        let n = n.max(1);
        let mut w = Self {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WorkerError::Runtime(i, e))?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let handle = rt.handle().clone();
            let thread = std::thread::Builder::new()
                .name(format!("waypoint-worker-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    // Until told to stop (or the sender is gone); dropping the runtime then
                    // cancels what is left.
                    let _ = rt.block_on(stop_rx);
                })
                .map_err(|e| WorkerError::Thread(i, e))?;
            w.handles.push(handle);
            w.stops.push(stop_tx);
            w.threads.push(thread);
        }
        Ok(w)
    }

    /// The runtime handles, by worker index.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops every worker and waits for its thread (blocking).
    pub fn shutdown(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_and_know_its_index() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.handles().len(), 2);
        for (i, h) in workers.handles().iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                let _ = tx.send((current(), std::thread::current().name().map(String::from)));
            });
            let (index, name) = rx.recv().unwrap();
            assert_eq!(index, i);
            assert_eq!(name, Some(format!("waypoint-worker-{i}")));
        }
        workers.shutdown();
        assert_eq!(current(), 0, "outside a worker the index is 0");
    }
}
