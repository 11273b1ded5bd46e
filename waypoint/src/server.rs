//! The HBONE side: accept mTLS connections on 15008, take each CONNECT (its `:authority` is the
//! original destination: a service VIP:port or a workload address), accept the tunnel, then find
//! out what it carries (HTTP/1.1, HTTP/2 or opaque TCP) and serve it.

mod detect;
mod h1guard;
mod tcp;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hbone::{ConnectRequest, Responder};
use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mesh_identity::SpiffeId;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use ztunnel::identity::CertManager;
use ztunnel::socket::Congestion;

use crate::proxy::{Downstream, Proxy};
use crate::resolve::{self, Target};
use crate::upstream::Prefixed;

pub use detect::{Detected, sniff};

/// Pause after an accept error (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Limit for the TLS handshake of a client.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP/1.1 request head (as the HBONE header limit): larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Limit for a client to send a complete HTTP/1.1 request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the HBONE server needs.
pub struct Server {
    /// The request pipeline.
    pub proxy: Arc<Proxy>,
    /// Certificates (the waypoint's own for TLS).
    pub certs: Arc<CertManager>,
    /// The waypoint's identity.
    pub identity: SpiffeId,
    /// Protocol sniffing timeout (ports without `appProtocol`).
    pub sniff_timeout: Duration,
    /// HBONE server settings.
    pub serve: hbone::ServeOptions,
    /// Cancelled to drain.
    pub drain: CancellationToken,
}

/// Pending connections each HBONE listener queues.
const LISTEN_BACKLOG: u32 = 1024;

/// One HBONE listener on `addr` per worker runtime of `workers` (`SO_REUSEPORT`: the kernel
/// spreads connections over them), each registered with its worker. With port 0 the first
/// listener picks the port and the others share it. The connections they accept get
/// `congestion` (`None`: the kernel's default).
pub fn bind(
    addr: SocketAddr,
    workers: &[Handle],
    congestion: Option<&Congestion>,
) -> std::io::Result<Vec<TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(workers.len());
    for worker in workers {
        let _in_worker = worker.enter();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        if let Some(cc) = congestion {
            cc.apply_best_effort(&SockRef::from(&socket), addr);
        }
        socket.bind(addr)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The downstream client: the `forwarded` address a ztunnel sends (the app's own ip:port), when
/// it is on the connection's source address, else that source. A client pod's ztunnel connects
/// from the pod's address, so a `forwarded` naming another host is only the peer's claim; it is
/// not logged as the client, nor passed on to the destination, whose ztunnel connects to the app
/// from the address the waypoint names.
fn client_of(req: &ConnectRequest) -> SocketAddr {
    req.forwarded_for
        .filter(|f| f.ip() == req.conn.peer_addr.ip())
        .unwrap_or(req.conn.peer_addr)
}

/// Accepts HBONE connections on `listener` until `drain` fires.
pub async fn run(listener: TcpListener, server: Arc<Server>) {
    let handler = {
        let server = server.clone();
        Arc::new(move |req: ConnectRequest, responder: Responder| {
            let server = server.clone();
            async move { server.tunnel(req, responder).await }
        })
    };
    loop {
        let accepted = tokio::select! {
            _ = server.drain.cancelled() => return,
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "HBONE accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let server = server.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let cfg = match server.certs.server_config(&server.identity) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "no certificate to serve HBONE with");
                    return;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let (tls, info) = match hbone::accept_tls(&acceptor, tcp, TLS_HANDSHAKE_TIMEOUT).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "HBONE handshake failed");
                    return;
                }
            };
            let drain = server.drain.clone();
            if let Err(e) = hbone::serve_connection(tls, info, &server.serve, drain, handler).await
            {
                tracing::debug!(error = %e, "HBONE connection failed");
            }
        });
    }
}

impl Server {
    async fn tunnel(&self, req: ConnectRequest, responder: Responder) {
        let mesh = self.proxy.state.mesh();
        let target = match resolve::target(&mesh, req.authority) {
            Ok(t) => t,
            Err(e) => {
                tracing::event!(target: "access", tracing::Level::INFO, src.identity = %req.conn.peer_identity, dst.addr = %req.authority, error = %e, "tunnel refused");
                let _ = responder.refuse(StatusCode::SERVICE_UNAVAILABLE);
                return;
            }
        };
        drop(mesh);
        let mut stream = match responder.accept() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "client went away before the tunnel opened");
                return;
            }
        };
        let app_protocol = match &target {
            Target::Service { app_protocol, .. } => app_protocol.clone(),
            Target::Workload { .. } => None,
        };
        let (prefix, detected) = match detect::by_app_protocol(app_protocol.as_deref()) {
            Some(d) => (bytes::Bytes::new(), d),
            None => match sniff(&mut stream, self.sniff_timeout).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel failed while sniffing");
                    return;
                }
            },
        };
        let down = Arc::new(Downstream::new(
            req.conn.peer_identity.clone(),
            client_of(&req),
            req.authority,
            target,
        ));
        let io = Prefixed::new(prefix, stream);
        match detected {
            Detected::Http => self.serve_http(down, io).await,
            Detected::Tcp => tcp::proxy(&self.proxy, &down, io).await,
        }
    }

    async fn serve_http(&self, down: Arc<Downstream>, io: Prefixed<hbone::H2Stream>) {
        let proxy = self.proxy.clone();
        let service = service_fn(move |req| {
            let (proxy, down) = (proxy.clone(), down.clone());
            async move { Ok::<_, Infallible>(proxy.handle(down, req).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            // A client that half-closes after its request (shutdown(SHUT_WR)) still gets the answer.
            .half_close(true);
        builder.http2().timer(TokioTimer::new());
        let io = h1guard::H1Guard::new(io);
        if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
            tracing::debug!(error = %e, "HTTP connection in tunnel ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use socket2::SockRef;
    use tokio::net::TcpStream;
    use ztunnel::socket::{Congestion, CongestionChoice};

    use super::*;

    #[tokio::test]
    async fn accepted_hbone_connections_get_the_tunnel_congestion_control() {
        let reno = "reno"
            .parse::<CongestionChoice>()
            .expect("reno")
            .algorithm()
            .cloned();
        let workers = [Handle::current()];
        for (cc, want_reno) in [(reno.as_ref(), true), (None, false)] {
            let listeners = bind("127.0.0.1:0".parse().expect("addr"), &workers, cc).expect("bind");
            let addr = listeners[0].local_addr().expect("addr");
            let client = TcpStream::connect(addr).await.expect("connect");
            let (accepted, _) = listeners[0].accept().await.expect("accept");
            let got = Congestion::of(&SockRef::from(&accepted)).expect("accepted");
            let default = Congestion::of(&SockRef::from(&client)).expect("client");
            if want_reno {
                assert_eq!(got, "reno");
                assert_ne!(default, "reno", "reno must not be this machine's default");
            } else {
                assert_eq!(got, default, "without a choice the kernel default stays");
            }
        }
    }
}
