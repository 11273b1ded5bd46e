//! One pooled HTTP/2 connection: dialing it, counting its streams, and the task that drives
//! it (keepalive PINGs, release after idle, removal when it dies).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong};
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::{Inner, PoolKey};

/// Errors of dialing a new pooled connection (shared by every tunnel that waited for it).
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The TCP connection could not be made.
    #[error("TCP connect to {dst} failed (is the HBONE port open?): {source}")]
    Connect {
        /// Destination.
        dst: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The connector could not give a TLS client configuration for the source identity.
    #[error("no TLS client config for {src} -> {dst} (is the source certificate ready?): {source}")]
    TlsConfig {
        /// Source identity.
        src: String,
        /// Destination.
        dst: SocketAddr,
        /// The connector's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The TLS handshake failed (wrong server identity, untrusted root, ...).
    #[error("TLS handshake with {dst} failed (check the server identity and trust root): {source}")]
    Tls {
        /// Destination.
        dst: SocketAddr,
        /// What rustls reported.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/2 handshake failed.
    #[error("HTTP/2 handshake with {dst} failed (is it an HBONE server?): {source}")]
    H2Handshake {
        /// Destination.
        dst: SocketAddr,
        /// The h2 error.
        #[source]
        source: h2::Error,
    },
    /// Connecting took longer than the pool's `connect_timeout`.
    #[error("connecting to {dst} did not finish within {after:?}")]
    Timeout {
        /// Destination.
        dst: SocketAddr,
        /// The limit.
        after: Duration,
    },
}

/// A pooled connection as seen by the pool: a handle to open streams plus its load.
pub(crate) struct PooledConn {
    pub(crate) id: u64,
    pub(crate) sender: SendRequest<Bytes>,
    active: AtomicUsize,
    dead: AtomicBool,
    /// When the last stream ended (valid while `active == 0`).
    idle_since: Mutex<Instant>,
    /// Signalled when `active` drops to zero.
    idle: tokio::sync::Notify,
}

impl PooledConn {
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
    }

    /// Counts one more stream; call with the pool lock held so idle release cannot race.
    pub(crate) fn acquire(self: &Arc<Self>) -> StreamGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// How long this connection has been without streams, `None` while it has some.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.active() > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since.elapsed())
    }
}

/// Held by every tunnel of a pooled connection; releases the stream slot on drop.
pub(crate) struct StreamGuard(Arc<PooledConn>);

impl StreamGuard {
    pub(crate) fn conn(&self) -> &Arc<PooledConn> {
        &self.0
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            self.0.idle.notify_one();
        }
    }
}

/// Dials `key` (TCP via the connector, TLS, HTTP/2) and spawns the task driving the new
/// connection. The connection is not yet in the pool.
pub(crate) async fn dial(
    inner: &Arc<Inner>,
    key: &PoolKey,
    id: u64,
) -> Result<Arc<PooledConn>, DialError> {
    let dst = key.dst;
    let timeout = inner.cfg.connect_timeout;
    let dialing = async {
        // Connect first: a connector may use that wait to get the source identity's certificate.
        let tcp = inner
            .connector
            .connect(key)
            .await
            .map_err(|source| DialError::Connect { dst, source })?;
        let tls_config =
            inner
                .connector
                .tls_config(key)
                .map_err(|source| DialError::TlsConfig {
                    src: key.src_identity.to_string(),
                    dst,
                    source,
                })?;
        // Nagle only delays small tunnel writes; failure to disable it is harmless.
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::IpAddress(dst.ip().into());
        let tls = TlsConnector::from(tls_config)
            .connect(server_name, crate::ReadBuffered::new(tcp))
            .await
            .map_err(|source| DialError::Tls { dst, source })?;
        let mut tls = tls;
        tls.get_mut()
            .1
            .set_buffer_limit(Some(crate::config::TLS_WRITE_BUFFER));
        crate::client::handshake(tls, &inner.cfg.h2)
            .await
            .map_err(|source| DialError::H2Handshake { dst, source })
    };
    let (sender, mut conn) =
        tokio::time::timeout(timeout, dialing)
            .await
            .map_err(|_| DialError::Timeout {
                dst,
                after: timeout,
            })??;
    let pooled = Arc::new(PooledConn {
        id,
        sender,
        active: AtomicUsize::new(0),
        dead: AtomicBool::new(false),
        idle_since: Mutex::new(Instant::now()),
        idle: tokio::sync::Notify::new(),
    });
    let ping = conn.ping_pong();
    let driver = Driver {
        pool: Arc::downgrade(inner),
        key: key.clone(),
        conn: pooled.clone(),
    };
    tokio::spawn(driver.run(conn, ping));
    debug!(id, %dst, src = %key.src_identity, "new pooled HBONE connection");
    Ok(pooled)
}

/// Drives one connection until it dies, fails keepalive, or is released after idling.
struct Driver {
    pool: Weak<Inner>,
    key: PoolKey,
    conn: Arc<PooledConn>,
}

impl Driver {
    async fn run<IO>(self, mut conn: h2::client::Connection<IO, Bytes>, ping: Option<PingPong>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let cfg = match self.pool.upgrade() {
            Some(inner) => inner.cfg.clone(),
            None => return,
        };
        let id = self.conn.id;
        let released = tokio::select! {
            res = &mut conn => {
                debug!(id, result = ?res, "pooled HBONE connection closed");
                false
            }
            _ = keepalive(ping, cfg.keepalive_interval, cfg.keepalive_timeout) => {
                debug!(id, "pooled HBONE connection failed keepalive; closing it");
                false
            }
            _ = self.idle_release(cfg.idle_timeout) => true,
        };
        self.conn.mark_dead();
        if let Some(inner) = self.pool.upgrade() {
            inner.remove(&self.key, id);
        }
        if released {
            // No stream is left and no new one can start: dropping the last handle makes h2
            // send GOAWAY and close the connection once the peer saw it.
            debug!(id, "releasing idle pooled HBONE connection");
            drop(self);
            let _ = tokio::time::timeout(cfg.keepalive_timeout, conn).await;
        }
    }

    /// Completes once the connection was idle for `timeout` and got removed from the pool.
    async fn idle_release(&self, timeout: Duration) {
        loop {
            match self.conn.idle_for() {
                None => self.conn.idle.notified().await,
                Some(idle) if idle >= timeout => {
                    let Some(inner) = self.pool.upgrade() else {
                        return;
                    };
                    if inner.evict_if_idle(&self.key, &self.conn, timeout) {
                        return;
                    }
                }
                Some(idle) => {
                    tokio::select! {
                        _ = tokio::time::sleep(timeout - idle) => {}
                        _ = self.conn.idle.notified() => {}
                    }
                }
            }
        }
    }
}

/// Sends a PING every `interval`; completes when a PONG does not come within `timeout`.
async fn keepalive(ping: Option<PingPong>, interval: Duration, timeout: Duration) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, ping.ping(Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "HBONE keepalive PING failed");
                return;
            }
            Err(_) => return,
        }
    }
}
