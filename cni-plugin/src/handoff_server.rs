//! The node agent's side of the handoff protocol (DESIGN.md 4.3): it listens on a
//! `SOCK_SEQPACKET` path, keeps the set of enrolled pods (with their netns descriptors) and
//! hands them to ztunnel in strict request/ack lock-step.
//!
//! One ztunnel at a time: on every connection the server waits for `Hello`, replays every
//! enrolled pod as `Add` (with its netns fd) and then `SnapshotDone`; only after a complete replay
//! does the new connection replace the previous one (so during an upgrade the old ztunnel keeps
//! being served until the new one is ready). [`HandoffServer::add_pod`] and
//! [`HandoffServer::remove_pod`] record the change and, when ztunnel is connected, deliver it
//! and return its Ack. All of it is blocking `std` code: an accept thread plus the callers'.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mesh_api::handoff::{AgentRequest, HandoffError, PodInfo, SeqPacketConn, SeqPacketListener};

mod session;

/// How long a new connection may take to send `Hello`: ztunnel sends it right after connecting,
/// so a few seconds only guard against a stuck or foreign client blocking the accept loop.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long ztunnel may take to answer one request: an `Add` opens a few sockets in the pod's
/// netns (milliseconds); the margin covers a loaded node without stalling pod start for long.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Longest wait for `Hello` on a new connection.
    pub hello_timeout: Duration,
    /// Longest wait for each `Ack` (and for a send to be accepted by the socket).
    pub ack_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// What happened to a change that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// ztunnel is connected and acknowledged the request.
    Acked,
    /// No ztunnel is connected: the change is recorded and will be part of the next replay.
    NotConnected,
    /// `remove_pod` of a pod that was not enrolled: nothing to do.
    NotEnrolled,
}

/// Errors of the handoff server. After `Timeout`, `Connection` and `Protocol` the connection is
/// closed (ztunnel reconnects and gets a full replay); the pod set keeps the change either way.
#[derive(Debug, thiserror::Error)]
pub enum HandoffServerError {
    /// The socket could not be set up.
    #[error("handoff server: {0}")]
    Listen(#[source] HandoffError),
    /// The accept thread could not be started.
    #[error("handoff server: cannot start the accept thread: {0}")]
    Thread(#[source] std::io::Error),
    /// ztunnel answered with an error.
    #[error("ztunnel refused {request}: {reason}")]
    Refused {
        /// The request (`Add pod <uid>`...).
        request: String,
        /// ztunnel's reason.
        reason: String,
    },
    /// ztunnel did not answer in time.
    #[error("ztunnel did not acknowledge {request} within {after:?}; is it overloaded or stuck?")]
    Timeout {
        /// The request.
        request: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection broke during the exchange.
    #[error("handoff connection to ztunnel broke during {request}: {source}")]
    Connection {
        /// The request.
        request: String,
        /// The transport error.
        source: HandoffError,
    },
    /// ztunnel answered with something other than an Ack.
    #[error("ztunnel broke the handoff protocol during {request}: {detail}")]
    Protocol {
        /// The request (or `Hello` for the greeting).
        request: String,
        /// What was wrong.
        detail: String,
    },
}

/// An enrolled pod and its network namespace.
#[derive(Debug)]
struct Enrolled {
    info: PodInfo,
    netns: OwnedFd,
}

#[derive(Debug, Default)]
struct State {
    /// Enrolled pods by uid (replayed in uid order).
    pods: BTreeMap<String, Enrolled>,
    /// The ztunnel connection that completed its replay.
    conn: Option<SeqPacketConn>,
    /// Completed replays so far (one per adopted connection).
    snapshots: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a connection is adopted.
    adopted: Condvar,
    stop: AtomicBool,
    config: ServerConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map consistent (each change is one insert
        // or remove), so carrying on is safe.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The agent's handoff server. Dropping it stops accepting, closes the connection and removes
/// the socket file.
#[derive(Debug)]
pub struct HandoffServer {
    shared: Arc<Shared>,
    listener: Arc<SeqPacketListener>,
    accept_thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl HandoffServer {
    /// Listens on `path` (a stale socket file there is replaced) and starts accepting ztunnels.
    pub fn bind(path: &Path, config: ServerConfig) -> Result<Self, HandoffServerError> {
        Self::bind_with_pods(path, config, Vec::new())
    }

    /// Like [`Self::bind`], with `pods` already enrolled before the first ztunnel can connect:
    /// a restarted agent passes the pods it reconciled, so ztunnel's first snapshot names them
    /// all and it keeps serving them (and their connections) instead of dropping them.
    pub fn bind_with_pods(
        path: &Path,
        config: ServerConfig,
        pods: Vec<(PodInfo, OwnedFd)>,
    ) -> Result<Self, HandoffServerError> {
        let listener = Arc::new(SeqPacketListener::bind(path).map_err(HandoffServerError::Listen)?);
        let pods = pods
            .into_iter()
            .map(|(info, netns)| (info.uid.clone(), Enrolled { info, netns }))
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pods,
                ..State::default()
            }),
            adopted: Condvar::new(),
            stop: AtomicBool::new(false),
            config,
        });
        let accept_thread = {
            let (shared, listener) = (shared.clone(), listener.clone());
            std::thread::Builder::new()
                .name("handoff-accept".into())
                .spawn(move || session::accept_loop(&shared, &listener))
                .map_err(HandoffServerError::Thread)?
        };
        tracing::info!(path = %path.display(), "handoff server listening");
        Ok(Self {
            shared,
            listener,
            accept_thread: Some(accept_thread),
            path: path.to_path_buf(),
        })
    }

    /// The socket path ztunnel connects to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Enrols (or re-enrols, replacing its netns) a pod and, if ztunnel is connected, sends it
    /// an `Add` with `netns` and returns its answer. The pod stays enrolled even if ztunnel
    /// refuses it or the delivery fails: call [`Self::remove_pod`] to give up on it.
    pub fn add_pod(&self, pod: PodInfo, netns: OwnedFd) -> Result<Delivery, HandoffServerError> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let request = AgentRequest::add(&pod);
        let name = format!("Add pod {}", pod.uid);
        let entry = state
            .pods
            .entry(pod.uid.clone())
            .insert_entry(Enrolled { info: pod, netns });
        let fd = entry.get().netns.as_fd();
        let result = live(&state.conn).map(|conn| {
            session::exchange(
                conn,
                &request,
                Some(fd),
                &name,
                self.shared.config.ack_timeout,
            )
        });
        deliver(&mut state.conn, result)
    }

    /// Releases a pod: forgets it (closing our netns descriptor) and, if ztunnel is connected,
    /// sends `Del` and returns its answer.
    pub fn remove_pod(&self, uid: &str) -> Result<Delivery, HandoffServerError> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if state.pods.remove(uid).is_none() {
            return Ok(Delivery::NotEnrolled);
        }
        let name = format!("Del pod {uid}");
        let result = live(&state.conn).map(|conn| {
            session::exchange(
                conn,
                &AgentRequest::del(uid),
                None,
                &name,
                self.shared.config.ack_timeout,
            )
        });
        deliver(&mut state.conn, result)
    }

    /// The enrolled pods, in uid order.
    pub fn pods(&self) -> Vec<PodInfo> {
        self.shared
            .lock()
            .pods
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Whether a ztunnel connection completed its replay and has not hung up since.
    pub fn is_connected(&self) -> bool {
        let mut state = self.shared.lock();
        if state.conn.as_ref().is_some_and(session::hung_up) {
            tracing::info!("ztunnel disconnected from the handoff socket");
            state.conn = None;
        }
        state.conn.is_some()
    }

    /// Number of replays completed (connections adopted) since the server started.
    pub fn snapshots(&self) -> u64 {
        self.shared.lock().snapshots
    }

    /// Waits until at least `count` replays have completed; false on timeout.
    pub fn wait_for_snapshots(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.snapshots < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .adopted
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The adopted connection, unless ztunnel hung up since.
fn live(conn: &Option<SeqPacketConn>) -> Option<&SeqPacketConn> {
    conn.as_ref().filter(|c| !session::hung_up(c))
}

/// Turns an exchange result (`None`: not connected) into the API answer, dropping the
/// connection when it is gone or unusable.
fn deliver(
    conn: &mut Option<SeqPacketConn>,
    result: Option<Result<(), HandoffServerError>>,
) -> Result<Delivery, HandoffServerError> {
    match result {
        None => {
            *conn = None;
            Ok(Delivery::NotConnected)
        }
        Some(Ok(())) => Ok(Delivery::Acked),
        Some(Err(err @ HandoffServerError::Refused { .. })) => Err(err),
        Some(Err(err)) => {
            tracing::warn!(%err, "closing the handoff connection; ztunnel will get a replay");
            *conn = None;
            Err(err)
        }
    }
}

impl Drop for HandoffServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept() (it fails with EINVAL on a shut-down listener).
        if let Err(err) = nix::sys::socket::shutdown(
            self.listener.as_fd().as_raw_fd(),
            nix::sys::socket::Shutdown::Both,
        ) {
            tracing::warn!(%err, "cannot shut down the handoff listener");
        }
        if let Some(thread) = self.accept_thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("handoff accept thread panicked");
        }
        self.shared.lock().conn = None;
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::debug!(%err, path = %self.path.display(), "handoff socket file not removed");
        }
    }
}
