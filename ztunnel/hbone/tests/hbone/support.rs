//! Test fixtures: a real PKI, an HBONE server on loopback that proxies to a real TCP upstream,
//! a pool connector, and a raw HTTP/2 writer for requests the h2 client refuses to produce.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use hbone::{
    ConnectRequest, Connector, H2Stream, Pool, PoolConfig, PoolKey, Responder, ServeOptions,
    TunnelRequest,
};
use http::StatusCode;
use mesh_identity::tls::{ServerIdentity, client_config, server_config};
use mesh_identity::{CertificateAuthority, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

pub const TD: &str = "cluster.local";

pub fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "default", sa)
}

/// A mesh CA issuing certificates on demand.
pub struct Pki {
    pub ca: CertificateAuthority,
}

impl Pki {
    pub fn new() -> Self {
        Self {
            ca: CertificateAuthority::generate(TD).expect("CA"),
        }
    }

    pub fn server_tls(&self, sa: &str) -> Arc<rustls::ServerConfig> {
        let cert = self.ca.issue(&id(sa), Duration::from_secs(3600)).unwrap();
        server_config(&cert, &self.ca.bundle()).unwrap()
    }

    pub fn client_tls(&self, src: &SpiffeId, dst: &SpiffeId) -> Arc<rustls::ClientConfig> {
        let cert = self.ca.issue(src, Duration::from_secs(3600)).unwrap();
        client_config(
            &cert,
            &self.ca.bundle(),
            ServerIdentity::OneOf(vec![dst.clone()]),
        )
        .unwrap()
    }
}

/// What the test server's handler does with an accepted request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Like ztunnel inbound: check the authority IP, connect to it and relay.
    Proxy,
    /// Accept after a delay, then relay (data sent before the 200 must survive).
    DelayedProxy(Duration),
    /// Requests for port 9 (discard) are accepted and never read (back-pressure); others are
    /// proxied.
    Stall,
    /// Accept, then reset the stream with INTERNAL_ERROR.
    Reset,
}

/// An HBONE server on 127.0.0.1 with counters of what happened.
pub struct Server {
    pub addr: SocketAddr,
    /// Drains every connection, including later ones.
    pub drain: CancellationToken,
    /// Per-connection drain tokens of the connections accepted so far.
    pub conn_drains: Arc<std::sync::Mutex<Vec<CancellationToken>>>,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// `serve_connection` results, in completion order.
    pub ended: mpsc::UnboundedReceiver<Result<(), hbone::ServeError>>,
    /// Tunnels handed to a `Stall` handler, for the test to read later.
    pub stalled: mpsc::UnboundedReceiver<H2Stream>,
    /// Requests the handler saw.
    pub requests: mpsc::UnboundedReceiver<ConnectRequest>,
}

pub async fn start_server(pki: &Pki, sa: &str, mode: Mode, opts: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(pki.server_tls(sa));
    let drain = CancellationToken::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let (stalled_tx, stalled) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let handler = Arc::new(move |req: ConnectRequest, resp: Responder| {
        let stalled_tx = stalled_tx.clone();
        let _ = req_tx.send(req.clone());
        async move { handle(mode, req, resp, stalled_tx).await }
    });
    let conn_drains = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (drain2, accepted2, conn_drains2) = (drain.clone(), accepted.clone(), conn_drains.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            accepted2.fetch_add(1, Ordering::SeqCst);
            let drain = drain2.child_token();
            conn_drains2.lock().unwrap().push(drain.clone());
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            let (opts, ended_tx) = (opts.clone(), ended_tx.clone());
            tokio::spawn(async move {
                let result = match hbone::accept_tls(&acceptor, tcp, Duration::from_secs(5)).await {
                    Ok((tls, info)) => {
                        hbone::serve_connection(tls, info, &opts, drain, handler).await
                    }
                    Err(e) => Err(e),
                };
                let _ = ended_tx.send(result);
            });
        }
    });
    Server {
        addr,
        drain,
        conn_drains,
        accepted,
        ended,
        stalled,
        requests,
    }
}

impl Server {
    /// Starts draining the connections accepted so far (later ones are served normally).
    pub fn drain_existing(&self) {
        for token in self.conn_drains.lock().unwrap().iter() {
            token.cancel();
        }
    }
}

async fn handle(
    mode: Mode,
    req: ConnectRequest,
    resp: Responder,
    stalled: mpsc::UnboundedSender<H2Stream>,
) {
    let stall = mode == Mode::Stall && req.authority.port() == 9;
    match mode {
        Mode::Proxy | Mode::DelayedProxy(_) | Mode::Stall if !stall => {
            if let Mode::DelayedProxy(d) = mode {
                tokio::time::sleep(d).await;
            }
            if !req.authority_matches_local() {
                let _ = resp.refuse(StatusCode::BAD_REQUEST);
                return;
            }
            let Ok(mut upstream) = TcpStream::connect(req.authority).await else {
                let _ = resp.refuse(StatusCode::SERVICE_UNAVAILABLE);
                return;
            };
            let Ok(mut tunnel) = resp.accept() else {
                return;
            };
            let _ = hbone::copy_bidirectional(&mut upstream, &mut tunnel).await;
        }
        Mode::Proxy | Mode::DelayedProxy(_) | Mode::Stall => {
            if let Ok(tunnel) = resp.accept() {
                let _ = stalled.send(tunnel);
            }
        }
        Mode::Reset => {
            if let Ok(mut tunnel) = resp.accept() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tunnel.reset(h2::Reason::INTERNAL_ERROR);
            }
        }
    }
}

/// A TCP echo upstream: echoes until EOF, then half-closes.
pub async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Dials plain loopback TCP and uses certificates of a shared PKI.
pub struct TestConnector {
    pub pki: Arc<Pki>,
    pub dials: AtomicUsize,
}

impl Connector for TestConnector {
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, std::io::Result<TcpStream>> {
        self.dials.fetch_add(1, Ordering::SeqCst);
        let dst = key.dst;
        Box::pin(async move { TcpStream::connect(dst).await })
    }

    fn tls_config(
        &self,
        key: &PoolKey,
    ) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.pki.client_tls(&key.src_identity, &key.dst_identity))
    }
}

pub fn pool(pki: &Arc<Pki>, cfg: PoolConfig) -> (Pool, Arc<TestConnector>) {
    let connector = Arc::new(TestConnector {
        pki: pki.clone(),
        dials: AtomicUsize::new(0),
    });
    (Pool::new(connector.clone(), cfg), connector)
}

pub fn key(dst: SocketAddr, dst_sa: &str) -> PoolKey {
    PoolKey {
        src_ip: "127.0.0.1".parse().unwrap(),
        src_identity: id("client"),
        dst_identity: id(dst_sa),
        dst,
    }
}

/// A TLS + HTTP/2 client connection outside the pool; the connection task is spawned.
pub async fn h2_client(
    pki: &Pki,
    server: SocketAddr,
) -> Result<h2::client::SendRequest<bytes::Bytes>> {
    let tls = tls_client(pki, server).await?;
    let (sender, conn) = hbone::client::handshake(tls, &hbone::H2Config::default()).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub async fn tls_client(
    pki: &Pki,
    server: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server).await?;
    let cfg = pki.client_tls(&id("client"), &id("server"));
    let name = rustls_pki_types::ServerName::IpAddress(server.ip().into());
    Ok(TlsConnector::from(cfg).connect(name, tcp).await?)
}

/// A tunnel from a fresh pool through a `Proxy` server to a fresh echo upstream; the pool and
/// server are returned so that they live as long as the caller needs the tunnel.
pub async fn echo_tunnel() -> Result<(H2Stream, Pool, Server)> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let (pool, _) = pool(&pki, PoolConfig::default());
    let tunnel = pool
        .connect(&key(server.addr, "server"), &tunnel_req(echo))
        .await?;
    Ok((tunnel, pool, server))
}

/// Round-trips `payload` through `tunnel` (echo upstream) and returns what came back.
pub async fn echo_once(tunnel: &mut H2Stream, payload: &[u8]) -> Result<Vec<u8>> {
    tunnel.write_all(payload).await?;
    let mut back = vec![0; payload.len()];
    tunnel.read_exact(&mut back).await.context("reading echo")?;
    Ok(back)
}

pub fn tunnel_req(authority: SocketAddr) -> TunnelRequest {
    TunnelRequest::new(authority)
}

// ---- raw HTTP/2, for malformed requests -------------------------------------------------

/// Sends one HEADERS frame with the given (literal, unindexed) fields on stream 1 and returns
/// the first frame the server sends about stream 1: (type, payload).
pub async fn raw_request(
    pki: &Pki,
    server: SocketAddr,
    fields: &[(&str, &str)],
) -> Result<(u8, Vec<u8>)> {
    let mut tls = tls_client(pki, server).await?;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    write_frame(&mut tls, 0x4, 0, 0, &[]).await?; // SETTINGS
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00); // literal without indexing, new name
        hpack_string(&mut block, name.as_bytes());
        hpack_string(&mut block, value.as_bytes());
    }
    write_frame(&mut tls, 0x1, 0x4 | 0x1, 1, &block).await?; // HEADERS, END_HEADERS|END_STREAM
    loop {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head)
            .await
            .context("reading frame header")?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (ty, stream) = (
            head[3],
            u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        );
        let mut payload = vec![0; len];
        tls.read_exact(&mut payload).await?;
        if ty == 0x4 && head[4] & 0x1 == 0 {
            write_frame(&mut tls, 0x4, 0x1, 0, &[]).await?; // SETTINGS ACK
        }
        if stream == 1 || ty == 0x7 {
            return Ok((ty, payload));
        }
    }
}

/// RST_STREAM error code from a raw frame, if it is one.
pub fn rst_code(frame: &(u8, Vec<u8>)) -> Option<u32> {
    (frame.0 == 0x3).then(|| u32::from_be_bytes([frame.1[0], frame.1[1], frame.1[2], frame.1[3]]))
}

/// The `:status` of a raw HEADERS frame when HPACK encoded it from the static table (200, 204,
/// 206, 304, 400, 404, 500), which h2 does for those codes.
pub fn raw_status(frame: &(u8, Vec<u8>)) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let first = *frame.1.first()?;
    let index = (first & 0x7f) as usize;
    (frame.0 == 0x1 && first & 0x80 != 0 && (8..=14).contains(&index)).then(|| STATIC[index - 8])
}

async fn write_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    ty: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> Result<()> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).await?;
    Ok(())
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    // 7-bit prefix integer, no Huffman.
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}
