//! The data-path workers: N threads, each running its own single-threaded tokio runtime (ztunnel's and the
//! waypoint's; the waypoint gives each worker its own HBONE listener and upstream pools).
//!
//! Every enrolled pod gets one set of listeners (15001/15006/15008, `SO_REUSEPORT`) per worker,
//! so the kernel spreads new connections over the workers and a connection then lives on one
//! thread from accept to close, together with the HBONE connections it uses (each pod has one
//! HBONE pool per worker). Nothing on a connection's path hands work to another thread: with a
//! work-stealing runtime every spawned task could wake a sibling thread, which cost a futex
//! wake-up and a context switch per new connection (twice the context switches, and a fifth
//! fewer connections per second, in the two-node benchmark). This is the worker model of Envoy.
//! The one exception is a bulk transfer, whose relay moves to the next worker
//! ([`Workers::offload_target`], `hbone::relay_tcp`) so that one stream uses two cores.
//!
//! The control side (handoff, control stream, admin, metrics) runs on the main runtime.

use std::cell::Cell;
use std::sync::Mutex;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// Index of the worker this thread is (0 outside workers).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Index of the worker running the caller; 0 when called outside a worker thread.
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

/// The running workers; dropping this stops them (their tasks are cancelled).
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Workers used when `--workers` is 0: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Workers {
    /// Starts `n` workers (at least one), threads named `<name>-<index>`.
    pub fn start(n: usize, name: &str) -> Result<Self, WorkerError> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            // Sockets and timers only: signals and child processes belong to the main runtime,
            // and with them every park of every worker would also poll the signal pipe and try
            // the process-wide lock of tokio's orphan-reaping queue.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| WorkerError::Runtime(i, e))?;
            handles.push(rt.handle().clone());
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            stops.push(stop_tx);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    // Runs until told to stop (or the sender is gone); dropping the runtime then
                    // cancels what is left.
                    let _ = rt.block_on(stop_rx);
                })
                .map_err(|e| WorkerError::Thread(i, e))?;
            threads.push(thread);
        }
        Ok(Self {
            handles,
            stops: Mutex::new(stops),
            threads: Mutex::new(threads),
        })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime handles, by worker index.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Where a bulk relay running on the calling worker may continue (the next worker), so that
    /// its socket and its HTTP/2 connection are served by two threads (`hbone::relay_tcp`);
    /// `None` with a single worker.
    pub fn offload_target(&self) -> Option<hbone::Offload> {
        let n = self.handles.len();
        (n > 1).then(|| hbone::Offload::new(self.handles[(current() + 1) % n].clone()))
    }

    /// Stops every worker and waits for their threads (blocking: call from a blocking context).
    pub fn shutdown(&self) {
        let stops = std::mem::take(&mut *self.stops.lock().unwrap_or_else(|e| e.into_inner()));
        for stop in stops {
            let _ = stop.send(());
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_and_know_its_index() {
        let workers = Workers::start(2, "ztunnel-worker").unwrap();
        assert_eq!(workers.len(), 2);
        for (i, h) in workers.handles().iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                let _ = tx.send((current(), std::thread::current().name().map(String::from)));
            });
            let (index, name) = rx.recv().unwrap();
            assert_eq!(index, i);
            assert_eq!(
                name.as_deref(),
                Some(format!("ztunnel-worker-{i}").as_str())
            );
        }
        workers.shutdown();
        assert_eq!(current(), 0, "outside a worker the index is 0");
    }

    #[test]
    fn workers_drive_sockets_and_timers() {
        let workers = Workers::start(1, "ztunnel-worker").expect("workers");
        let (tx, rx) = std::sync::mpsc::channel();
        workers.handles()[0].spawn(async move {
            let run = async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let (client, accepted) =
                    tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
                let (_, peer) = accepted?;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                std::io::Result::Ok(peer == client?.local_addr()?)
            };
            let _ = tx.send(run.await.map_err(|e| e.to_string()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("worker task finished");
        assert_eq!(result, Ok(true));
        workers.shutdown();
    }

    #[test]
    fn bulk_relays_move_to_the_next_worker_and_never_with_one_worker() {
        let one = Workers::start(1, "ztunnel-worker").unwrap();
        assert!(one.offload_target().is_none());
        one.shutdown();
        let workers = std::sync::Arc::new(Workers::start(3, "ztunnel-worker").unwrap());
        for i in 0..3 {
            let (tx, rx) = std::sync::mpsc::channel();
            let w = workers.clone();
            workers.handles()[i].spawn(async move {
                let target = w.offload_target().expect("three workers");
                drop(target.handle().spawn(async move { tx.send(current()) }));
            });
            let ran_on = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
            assert_eq!(ran_on, (i + 1) % 3, "moved from worker {i}");
        }
        workers.shutdown();
    }

    #[test]
    fn zero_workers_means_one() {
        let workers = Workers::start(0, "ztunnel-worker").unwrap();
        assert_eq!(workers.len(), 1);
        workers.shutdown();
    }
}
