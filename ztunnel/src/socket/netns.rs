//! Running code inside another network namespace on a dedicated OS thread.
//!
//! Two ways, by cost:
//! - [`in_netns`] starts a fresh thread per call, enters the namespace, runs the closure and lets the
//!   thread exit (so it never has to switch back). Cost: one thread spawn + `setns` + join, roughly
//!   30-100 µs, and it blocks the calling thread for that long. Right for rare work such as binding
//!   a pod's listeners at enrolment; from async code call it inside `tokio::task::spawn_blocking`.
//! - [`NetnsWorker`] keeps one thread parked inside the namespace and runs closures sent to it. Cost
//!   per call: one channel round trip and a thread wake-up (a few µs), plus one idle thread (~8 KiB
//!   of touched stack) per worker for its lifetime. Right for per-connection socket creation; keep
//!   one per enrolled pod and drop it when the pod leaves.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;

use nix::sched::{CloneFlags, setns};

use super::SocketError;

/// Stack of the helper threads: they only create and configure sockets.
const HELPER_STACK_SIZE: usize = 256 * 1024;

/// Runs `f` on a new OS thread that first joins the network namespace `netns` (a file descriptor
/// such as `/proc/<pid>/ns/net` or `/run/netns/<name>`), and returns its result.
///
/// The thread exits afterwards, so no thread of the process stays in the namespace. Blocks the
/// caller until `f` returns; see the module documentation for the cost.
pub fn in_netns<T, E, F>(netns: BorrowedFd<'_>, f: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send,
    T: Send,
    E: Send + From<SocketError>,
{
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("ztunnel-netns".to_owned())
            .stack_size(HELPER_STACK_SIZE)
            .spawn_scoped(scope, move || -> Result<T, E> {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(SocketError::EnterNetns)?;
                f()
            })
            .map_err(SocketError::SpawnThread)?;
        handle.join().map_err(|_| SocketError::Panicked)?
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// A long-lived OS thread parked inside one network namespace, running closures there.
///
/// Dropping the worker ends its thread once the queued closures have run.
#[derive(Debug)]
pub struct NetnsWorker {
    jobs: mpsc::Sender<Job>,
}

impl NetnsWorker {
    /// Starts the helper thread and enters `netns` on it; fails if the namespace cannot be entered.
    pub fn spawn(netns: BorrowedFd<'_>) -> Result<Self, SocketError> {
        let owned: OwnedFd = netns.try_clone_to_owned().map_err(SocketError::DupNetns)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), SocketError>>(1);
        thread::Builder::new()
            .name("ztunnel-netns-worker".to_owned())
            .stack_size(HELPER_STACK_SIZE)
            .spawn(move || {
                let entered = setns(owned.as_fd(), CloneFlags::CLONE_NEWNET);
                drop(owned);
                let failed = entered.is_err();
                // The spawner waits for this; if it is gone there is nobody to serve.
                if ready_tx
                    .send(entered.map_err(SocketError::EnterNetns))
                    .is_err()
                    || failed
                {
                    return;
                }
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .map_err(SocketError::SpawnThread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { jobs }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SocketError::WorkerStopped),
        }
    }

    /// Runs `f` inside the namespace and waits for its result, blocking the calling thread.
    pub fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + From<SocketError> + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(f, move |r| {
            // The caller may have given up waiting; nothing to do then.
            let _ = tx.send(r);
        })?;
        match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(())) => Err(SocketError::Panicked.into()),
            Err(_) => Err(SocketError::WorkerStopped.into()),
        }
    }

    /// Runs `f` inside the namespace without blocking the async caller.
    pub async fn run_async<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + From<SocketError> + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |r| {
            // The caller's future may have been dropped; nothing to do then.
            let _ = tx.send(r);
        })?;
        match rx.await {
            Ok(Ok(r)) => r,
            Ok(Err(())) => Err(SocketError::Panicked.into()),
            Err(_) => Err(SocketError::WorkerStopped.into()),
        }
    }

    /// Queues `f`; `reply` gets its result, or `Err(())` if it panicked (the worker survives).
    fn submit<R, F, S>(&self, f: F, reply: S) -> Result<(), SocketError>
    where
        F: FnOnce() -> R + Send + 'static,
        S: FnOnce(Result<R, ()>) + Send + 'static,
    {
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f)).map_err(|_| ());
            reply(result);
        });
        self.jobs.send(job).map_err(|_| SocketError::WorkerStopped)
    }
}
