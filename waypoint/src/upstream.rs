//! Connections to the chosen endpoints: HBONE tunnels (the waypoint's own identity, pooled HTTP/2
//! connections to each node's ztunnel) for mesh workloads, plain TCP for workloads outside the
//! mesh; and HTTP/1.1 and HTTP/2 client connections over them, kept for reuse per endpoint.
//!
//! Every data-path worker has its own pools (HBONE connections, idle HTTP/1.1 and HTTP/2
//! connections): a request is sent over connections driven by the thread that serves it, so no
//! step of it wakes another thread.

mod connector;
pub mod io;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_identity::SpiffeId;
use ztunnel::identity::CertManager;
use ztunnel::socket::Congestion;

pub use connector::WaypointConnector;
pub use io::{Prefixed, Tunnel};

/// Boxed error of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type requests and responses carry through the waypoint.
pub type Body = BoxBody<Bytes, BoxError>;

/// An upstream HTTP/1.1 connection unused for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// Limit for plain TCP connects to workloads outside the mesh.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors reaching an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The HBONE tunnel could not be opened.
    #[error("HBONE tunnel to {0} failed: {1}")]
    Tunnel(SocketAddr, hbone::PoolError),
    /// Plain TCP connect failed.
    #[error("connect to {0} failed: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The HTTP client handshake over the connection failed.
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
    /// The request failed before a response arrived.
    #[error("request to {0} failed: {1}")]
    Request(SocketAddr, hyper::Error),
}

impl UpstreamError {
    /// Whether the connection could not be made (`connect-failure` in retry terms); the other
    /// errors are resets before a response (`reset`).
    pub fn is_connect_failure(&self) -> bool {
        !matches!(self, Self::Request(..))
    }

    /// Envoy-style response flag for metrics and access logs.
    pub fn response_flag(&self) -> &'static str {
        match self {
            Self::Tunnel(..) | Self::Connect(..) | Self::Handshake(..) => "UF",
            Self::Request(..) => "UC",
        }
    }
}

/// A concrete destination: address (pod IP : target port) and, for mesh workloads, the identity
/// its ztunnel must prove (HBONE); `None` = plain TCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Pod address and target port.
    pub addr: SocketAddr,
    /// Identity of the workload, when it is in the mesh.
    pub identity: Option<SpiffeId>,
}

/// HTTP version spoken upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 cleartext (gRPC).
    Http2,
}

/// An idle HTTP/1.1 connection and when it was last used.
type IdleH1 = (http1::SendRequest<Body>, Instant);

/// The connection pools of one data-path worker.
struct Pools {
    hbone: hbone::Pool,
    h1: Mutex<HashMap<Endpoint, Vec<IdleH1>>>,
    h2: Mutex<HashMap<Endpoint, http2::SendRequest<Body>>>,
}

/// Pools of upstream connections, one set per data-path worker.
pub struct Upstreams {
    pools: Vec<Pools>,
    me: SpiffeId,
    my_ip: IpAddr,
}

impl Upstreams {
    /// Pools presenting identity `me` (certificates from `certs`) from address `my_ip`, one set
    /// for each of `workers` data-path workers (at least one). HBONE connections get the
    /// `congestion` control (`None`: the kernel's default); plain TCP to endpoints outside the
    /// mesh keeps the default, as ztunnel's passthrough does.
    pub fn new(
        certs: Arc<CertManager>,
        me: SpiffeId,
        my_ip: IpAddr,
        workers: usize,
        congestion: Option<Congestion>,
    ) -> Self {
        let connector = Arc::new(WaypointConnector::new(certs, congestion));
        let pools = (0..workers.max(1))
            .map(|_| Pools {
                hbone: hbone::Pool::new(connector.clone(), hbone::PoolConfig::default()),
                h1: Mutex::default(),
                h2: Mutex::default(),
            })
            .collect();
        Self { pools, me, my_ip }
    }

    /// The pools of the worker running the caller (the first set outside the workers).
    fn pools(&self) -> &Pools {
        let i = ztunnel::workers::current() % self.pools.len().max(1);
        &self.pools[i]
    }

    /// Opens a byte stream to `ep`: an HBONE tunnel or a TCP connection. A tunnel that carries one
    /// downstream connection names its `client` in `forwarded` (DESIGN.md 4.1), and the
    /// destination's ztunnel, which believes that header only from a waypoint of the destination,
    /// then connects to the application from that address; pooled HTTP connections carry many
    /// clients and pass `None`.
    pub async fn connect(
        &self,
        ep: &Endpoint,
        client: Option<SocketAddr>,
    ) -> Result<Tunnel, UpstreamError> {
        match &ep.identity {
            Some(id) => {
                let key = hbone::PoolKey {
                    src_ip: self.my_ip,
                    src_identity: self.me.clone(),
                    dst_identity: id.clone(),
                    dst: SocketAddr::new(ep.addr.ip(), hbone::HBONE_PORT),
                };
                let mut req = hbone::TunnelRequest::new(ep.addr);
                req.forwarded_for = client;
                let s = self
                    .pools()
                    .hbone
                    .connect(&key, &req)
                    .await
                    .map_err(|e| UpstreamError::Tunnel(ep.addr, e))?;
                Ok(Tunnel::Hbone(Box::new(s)))
            }
            None => {
                let tcp = tokio::time::timeout(
                    TCP_CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect(ep.addr),
                )
                .await
                .map_err(|_| UpstreamError::Connect(ep.addr, std::io::ErrorKind::TimedOut.into()))?
                .map_err(|e| UpstreamError::Connect(ep.addr, e))?;
                let _ = tcp.set_nodelay(true);
                Ok(Tunnel::Tcp(tcp))
            }
        }
    }

    /// Sends `req` to `ep` over a pooled (or new) connection of `version`.
    /// `reuse` = false closes an HTTP/1.1 connection after this request
    /// (`maxRequestsPerConnection: 1`).
    pub async fn send(
        &self,
        ep: &Endpoint,
        version: Version,
        req: Request<Body>,
        reuse: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match version {
            Version::Http1 => self.send_h1(ep, req, reuse).await,
            Version::Http2 => self.send_h2(ep, req).await,
        }
    }

    async fn send_h1(
        &self,
        ep: &Endpoint,
        req: Request<Body>,
        reuse: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let idle = if reuse { self.take_idle_h1(ep) } else { None };
        let mut sender = match idle {
            Some(s) => s,
            None => {
                let io = TokioIo::new(self.connect(ep, None).await?);
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|e| UpstreamError::Handshake(ep.addr, e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                    }
                });
                sender
            }
        };
        let response = sender.send_request(req);
        // The sender becomes ready again once this exchange is over; until then `is_ready` keeps
        // other requests off it.
        if reuse {
            self.put_idle_h1(ep, sender);
        }
        response
            .await
            .map_err(|e| UpstreamError::Request(ep.addr, e))
    }

    fn take_idle_h1(&self, ep: &Endpoint) -> Option<http1::SendRequest<Body>> {
        let mut map = lock(&self.pools().h1);
        let list = map.get_mut(ep)?;
        let now = Instant::now();
        list.retain(|(s, used)| !s.is_closed() && now.duration_since(*used) < IDLE_TIMEOUT);
        let i = list.iter().position(|(s, _)| s.is_ready())?;
        Some(list.swap_remove(i).0)
    }

    fn put_idle_h1(&self, ep: &Endpoint, sender: http1::SendRequest<Body>) {
        let mut map = lock(&self.pools().h1);
        // The endpoint (three identity strings) is cloned only for its first idle connection.
        match map.get_mut(ep) {
            Some(list) if list.len() < MAX_IDLE_PER_ENDPOINT => list.push((sender, Instant::now())),
            Some(_) => {}
            None => {
                map.insert(ep.clone(), vec![(sender, Instant::now())]);
            }
        }
    }

    async fn send_h2(
        &self,
        ep: &Endpoint,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let existing = lock(&self.pools().h2)
            .get(ep)
            .filter(|s| !s.is_closed())
            .cloned();
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let io = TokioIo::new(self.connect(ep, None).await?);
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(|e| UpstreamError::Handshake(ep.addr, e))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                });
                lock(&self.pools().h2).insert(ep.clone(), sender.clone());
                sender
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| UpstreamError::Request(ep.addr, e))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Request(ep.addr, e))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain maps in a usable state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
