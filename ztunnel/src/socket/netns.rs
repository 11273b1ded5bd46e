//! Running code inside another network namespace on a dedicated OS thread.
//!
//! Two ways, by cost:
//! - [`in_netns`] starts a fresh thread per call, enters the namespace, runs the closure and lets the
//!   thread exit (so it never has to switch back). Cost: one thread spawn + `setns` + join, roughly
//!   30-100 µs, and it blocks the calling thread for that long. Right for rare work in tests and
//!   tools; from async code call it inside `tokio::task::spawn_blocking`.
//! - [`PodNetns`] enters the namespace on the *calling* thread, runs the closure and switches the
//!   thread back to the process's own namespace before returning (two `setns` calls, a few µs,
//!   no other thread involved). This is what a connection's path uses: a hand-off to a helper
//!   thread and back cost two thread wake-ups per new connection, the largest part of the cost of
//!   an inbound connection. If switching back ever failed, the thread would be left in a pod's
//!   namespace where every later socket it made would land: the process aborts instead.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
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

/// The process's own network namespace, opened the first time a thread leaves it.
static HOME: OnceLock<File> = OnceLock::new();

/// The process's own network namespace. Only called outside [`PodNetns::run`] (or from its start,
/// before the thread left), so `/proc/thread-self/ns/net` is always the home namespace here.
fn home() -> Result<&'static File, SocketError> {
    if let Some(f) = HOME.get() {
        return Ok(f);
    }
    let f = File::open("/proc/thread-self/ns/net").map_err(SocketError::DupNetns)?;
    Ok(HOME.get_or_init(|| f))
}

/// Switches the thread back home when dropped (also while unwinding from a panic).
struct ReturnHome(&'static File);

impl Drop for ReturnHome {
    fn drop(&mut self) {
        if let Err(e) = setns(self.0.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Every later socket of this thread would be made in a pod's namespace.
            eprintln!(
                "ztunnel: cannot return a thread to its own network namespace ({e}); aborting"
            );
            std::process::abort();
        }
    }
}

/// A pod's network namespace, entered by the calling thread for the instant a socket is made.
#[derive(Debug)]
pub struct PodNetns {
    fd: OwnedFd,
}

impl PodNetns {
    /// Keeps a duplicate of `netns`; fails if it is not a network namespace that can be entered
    /// (checked by entering it once).
    pub fn open(netns: BorrowedFd<'_>) -> Result<Self, SocketError> {
        let fd = netns.try_clone_to_owned().map_err(SocketError::DupNetns)?;
        let me = Self { fd };
        me.run(|| Ok::<_, SocketError>(()))?;
        Ok(me)
    }

    /// Runs `f` on this thread inside the namespace and returns the thread to the process's own
    /// namespace before returning. A panic in `f` is reported as [`SocketError::Panicked`].
    pub fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E>,
        E: From<SocketError>,
    {
        let home = home()?;
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(SocketError::EnterNetns)?;
        let back = ReturnHome(home);
        let result = catch_unwind(AssertUnwindSafe(f));
        drop(back);
        result.map_err(|_| E::from(SocketError::Panicked))?
    }
}
