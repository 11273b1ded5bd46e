//! Pool of HBONE client connections keyed by (source, destination identity, destination).
//!
//! Each HTTP/2 connection carries many tunnels (up to `max_streams_per_conn`). Concurrent
//! tunnels of one key are spread over up to `parallel_connections` connections so that bulk
//! flows can use more than one core (one connection is driven by one task). Dialing is
//! single-flight: N tunnels racing for a key without a usable connection cause one dial.

mod conn;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mesh_identity::SpiffeId;
use tokio::net::TcpStream;
use tokio::sync::watch;

pub use conn::DialError;
use conn::PooledConn;
pub(crate) use conn::StreamGuard;

use crate::client::{ConnectError, TunnelRequest};
use crate::config::H2Config;
use crate::stream::H2Stream;

/// Streams per connection before another connection is opened (Istio uses about 100).
pub const DEFAULT_MAX_STREAMS_PER_CONN: usize = 100;
/// Connections per key opened eagerly for concurrent tunnels: two lets two bulk flows to one
/// destination run on two cores; more costs a handshake (~0.7 ms CPU) each for little gain.
pub const DEFAULT_PARALLEL_CONNECTIONS: usize = 2;
/// Release a connection without tunnels after this long (reuse across short connections).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// PING interval to detect dead peers and keep middleboxes' state.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a PONG may take before the connection is considered dead.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for dialing (TCP + TLS + HTTP/2) and, separately, for the CONNECT answer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tunnel attempts on fresh connections when a connection was going away under us.
const MAX_ATTEMPTS: usize = 3;

/// Identifies which connections a tunnel may share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Source workload IP: connections are made from inside that workload's network
    /// namespace, so workloads never share one even with the same identity.
    pub src_ip: IpAddr,
    /// Identity presented in the client certificate.
    pub src_identity: SpiffeId,
    /// Identity the server must present.
    pub dst_identity: SpiffeId,
    /// HBONE address of the destination (normally port 15008).
    pub dst: SocketAddr,
}

/// Supplies sockets and TLS client configurations to the pool.
pub trait Connector: Send + Sync + 'static {
    /// A TCP connection to `key.dst` (e.g. created inside the source pod's network namespace
    /// with SO_MARK set). The pool sets TCP_NODELAY.
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, io::Result<TcpStream>>;

    /// The rustls client config: client certificate of `key.src_identity`, server verified as
    /// `key.dst_identity`, ALPN `h2`. Asked for after [`Connector::connect`] succeeded, so a
    /// connector can get a missing certificate asynchronously while it connects.
    fn tls_config(
        &self,
        key: &PoolKey,
    ) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// HTTP/2 tuning of the client connections.
    pub h2: H2Config,
    /// Streams per connection before another connection is opened.
    pub max_streams_per_conn: usize,
    /// Connections per key opened eagerly for concurrent tunnels (1 disables spreading).
    pub parallel_connections: usize,
    /// Release a connection that had no tunnel for this long.
    pub idle_timeout: Duration,
    /// PING interval.
    pub keepalive_interval: Duration,
    /// PONG deadline.
    pub keepalive_timeout: Duration,
    /// Limit for dialing, and separately for the CONNECT answer.
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            h2: H2Config::default(),
            max_streams_per_conn: DEFAULT_MAX_STREAMS_PER_CONN,
            parallel_connections: DEFAULT_PARALLEL_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Errors of [`Pool::connect`].
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made (shared by all tunnels that waited for this dial).
    #[error(transparent)]
    Dial(Arc<DialError>),
    /// The connection was made but the tunnel could not be opened.
    #[error(transparent)]
    Tunnel(#[from] ConnectError),
    /// The CONNECT got no answer in time.
    #[error("HBONE CONNECT to {authority} via {dst} got no answer within {after:?}")]
    Timeout {
        /// The tunnel's target.
        authority: SocketAddr,
        /// The HBONE peer.
        dst: SocketAddr,
        /// The limit.
        after: Duration,
    },
}

/// A pool of HBONE client connections. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    connector: Arc<dyn Connector>,
    cfg: PoolConfig,
    keys: Mutex<HashMap<PoolKey, KeyState>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct KeyState {
    conns: Vec<Arc<PooledConn>>,
    /// Set while a dial for this key runs: (dial id, completion signal).
    dialing: Option<(u64, watch::Receiver<DialOutcome>)>,
}

/// `None` while the dial runs.
type DialOutcome = Option<Result<(), Arc<DialError>>>;

/// What a tunnel request does after looking at the key's state.
enum Plan {
    Use(StreamGuard),
    Wait(watch::Receiver<DialOutcome>),
    Dial(Box<DialTicket>),
}

impl Pool {
    /// A pool that gets sockets and TLS configs from `connector`.
    pub fn new(connector: Arc<dyn Connector>, cfg: PoolConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                cfg,
                keys: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Opens a tunnel to `req.authority` through the HBONE peer of `key`, reusing a pooled
    /// connection when one has room.
    pub async fn connect(&self, key: &PoolKey, req: &TunnelRequest) -> Result<H2Stream, PoolError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let guard = self.stream_slot(key).await?;
            let timeout = self.inner.cfg.connect_timeout;
            let opening = crate::client::connect(&guard.conn().sender, req);
            let result =
                tokio::time::timeout(timeout, opening)
                    .await
                    .map_err(|_| PoolError::Timeout {
                        authority: req.authority,
                        dst: key.dst,
                        after: timeout,
                    })?;
            match result {
                Ok(stream) => return Ok(stream.with_guard(guard)),
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, "pooled HBONE connection unusable; retrying");
                    guard.conn().mark_dead();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Number of live pooled connections for `key` (for tests and introspection).
    pub fn connections(&self, key: &PoolKey) -> usize {
        self.inner
            .lock()
            .get(key)
            .map_or(0, |st| st.conns.iter().filter(|c| c.is_alive()).count())
    }

    /// A stream slot on a usable connection of `key`, dialing one if needed.
    async fn stream_slot(&self, key: &PoolKey) -> Result<StreamGuard, PoolError> {
        loop {
            match self.plan(key) {
                Plan::Use(guard) => return Ok(guard),
                Plan::Wait(mut rx) => {
                    // Err means the dialer gave up (its caller was cancelled): plan again.
                    if rx.changed().await.is_ok()
                        && let Some(Err(e)) = &*rx.borrow()
                    {
                        return Err(PoolError::Dial(e.clone()));
                    }
                }
                Plan::Dial(ticket) => {
                    let id = ticket.id;
                    // Boxed: the TLS and HTTP/2 handshakes make the dial future several KiB, and
                    // inline it would enlarge every tunnel's task, which tokio copies whole when
                    // it spawns, finishes and drops a task, for the rare connection that dials.
                    match Box::pin(conn::dial(&self.inner, key, id)).await {
                        Ok(pooled) => return Ok(ticket.finish_ok(pooled)),
                        Err(e) => {
                            let e = Arc::new(e);
                            if let Some(guard) = ticket.finish_err(e.clone()) {
                                return Ok(guard);
                            }
                            return Err(PoolError::Dial(e));
                        }
                    }
                }
            }
        }
    }

    fn plan(&self, key: &PoolKey) -> Plan {
        let cfg = &self.inner.cfg;
        let mut keys = self.inner.lock();
        let st = keys.entry(key.clone()).or_default();
        st.conns.retain(|c| c.is_alive());
        let best = st
            .conns
            .iter()
            .filter(|c| c.active() < cfg.max_streams_per_conn)
            .min_by_key(|c| c.active());
        match (best, &st.dialing) {
            (Some(c), _) if c.active() == 0 => Plan::Use(c.acquire()),
            (Some(c), Some(_)) => Plan::Use(c.acquire()),
            (Some(c), None) if st.conns.len() >= cfg.parallel_connections => Plan::Use(c.acquire()),
            (None, Some((_, rx))) => Plan::Wait(rx.clone()),
            (_, None) => {
                let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = watch::channel(None);
                st.dialing = Some((id, rx));
                Plan::Dial(Box::new(DialTicket {
                    inner: self.inner.clone(),
                    key: key.clone(),
                    id,
                    tx: Some(tx),
                }))
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, KeyState>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops connection `id` from `key` (it died or was released).
    pub(crate) fn remove(&self, key: &PoolKey, id: u64) {
        remove_locked(&mut self.lock(), key, id);
    }

    /// Removes `conn` if it still has no streams and idled for `timeout`; true if removed.
    /// Runs under the pool lock, as stream slots are taken, so no tunnel can slip in.
    pub(crate) fn evict_if_idle(
        &self,
        key: &PoolKey,
        conn: &Arc<PooledConn>,
        timeout: Duration,
    ) -> bool {
        let mut keys = self.lock();
        if conn.idle_for().is_some_and(|idle| idle >= timeout) {
            conn.mark_dead();
            remove_locked(&mut keys, key, conn.id);
            return true;
        }
        false
    }
}

/// The right (and duty) to dial for a key; dropping it unfinished lets waiters plan again.
struct DialTicket {
    inner: Arc<Inner>,
    key: PoolKey,
    id: u64,
    tx: Option<watch::Sender<DialOutcome>>,
}

impl DialTicket {
    /// Adds the new connection to the pool, takes a stream slot on it and wakes waiters.
    fn finish_ok(mut self: Box<Self>, pooled: Arc<PooledConn>) -> StreamGuard {
        let guard = {
            let mut keys = self.inner.lock();
            let st = keys.entry(self.key.clone()).or_default();
            let guard = pooled.acquire();
            st.conns.push(pooled);
            clear_dialing(st, self.id);
            guard
        };
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(Ok(())));
        }
        guard
    }

    /// Reports the failure to waiters; returns a slot on an existing connection if there is
    /// one with room (the dial was only meant to spread load).
    fn finish_err(mut self: Box<Self>, err: Arc<DialError>) -> Option<StreamGuard> {
        let fallback = {
            let mut keys = self.inner.lock();
            let st = keys.entry(self.key.clone()).or_default();
            clear_dialing(st, self.id);
            let max = self.inner.cfg.max_streams_per_conn;
            st.conns
                .iter()
                .filter(|c| c.is_alive() && c.active() < max)
                .min_by_key(|c| c.active())
                .map(|c| c.acquire())
        };
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(Err(err)));
        }
        fallback
    }
}

fn remove_locked(keys: &mut HashMap<PoolKey, KeyState>, key: &PoolKey, id: u64) {
    if let Some(st) = keys.get_mut(key) {
        st.conns.retain(|c| c.id != id);
        if st.conns.is_empty() && st.dialing.is_none() {
            keys.remove(key);
        }
    }
}

fn clear_dialing(st: &mut KeyState, id: u64) {
    if st.dialing.as_ref().is_some_and(|(d, _)| *d == id) {
        st.dialing = None;
    }
}

impl Drop for DialTicket {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let mut keys = self.inner.lock();
            if let Some(st) = keys.get_mut(&self.key) {
                clear_dialing(st, self.id);
                if st.conns.is_empty() {
                    keys.remove(&self.key);
                }
            }
        }
    }
}
