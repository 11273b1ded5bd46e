//! HBONE server: terminate mTLS + HTTP/2 connections and hand each valid `CONNECT` to a
//! handler, which decides (policy, upstream) and then accepts or refuses the tunnel.

mod request;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Response, StatusCode};
use mesh_identity::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

pub use request::{
    BAGGAGE, ConnectRequest, FORWARDED, Rejection, TRACEPARENT, authority_ip_matches,
    parse_forwarded_for,
};

use crate::bufio::ReadBuffered;
use crate::config::H2Config;
use crate::stream::H2Stream;

/// How long open tunnels may keep running after a drain started, by default.
pub const DEFAULT_DRAIN_PERIOD: Duration = Duration::from_secs(5);
/// How long the final GOAWAY may take to flush when the drain period ran out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors of the HBONE server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS handshake with a client failed (certificate rejected, protocol mismatch, ...).
    #[error(
        "TLS handshake with {peer} failed (check the client's certificate and trust root): {source}"
    )]
    TlsHandshake {
        /// The client.
        peer: SocketAddr,
        /// What rustls reported.
        #[source]
        source: io::Error,
    },
    /// The TLS or HTTP/2 handshake did not finish in time.
    #[error("handshake with {peer} did not finish within {after:?}")]
    HandshakeTimeout {
        /// The client.
        peer: SocketAddr,
        /// The limit that ran out.
        after: Duration,
    },
    /// The client's certificate carries no usable SPIFFE identity.
    #[error("client {peer} presented no usable SPIFFE identity: {source}")]
    PeerIdentity {
        /// The client.
        peer: SocketAddr,
        /// Why the identity was rejected.
        #[source]
        source: Box<mesh_identity::Error>,
    },
    /// The accepted socket has no address (it was closed already).
    #[error("accepted socket has no address: {0}")]
    SocketAddr(#[source] io::Error),
    /// The HTTP/2 preface/SETTINGS exchange failed.
    #[error("HTTP/2 handshake with {peer} failed (is the client speaking HBONE?): {source}")]
    H2Handshake {
        /// The client.
        peer: SocketAddr,
        /// The h2 error.
        #[source]
        source: h2::Error,
    },
    /// The HTTP/2 connection failed after the handshake.
    #[error("HTTP/2 connection with {peer} failed: {source}")]
    Connection {
        /// The client.
        peer: SocketAddr,
        /// The h2 error.
        #[source]
        source: h2::Error,
    },
    /// Sending the response to a `CONNECT` failed (the client reset the stream meanwhile).
    #[error("sending the CONNECT response failed (client reset the stream?): {0}")]
    Respond(#[source] h2::Error),
}

/// The connection a request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's verified identity (URI SAN of its certificate).
    pub peer_identity: SpiffeId,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The address the client connected to.
    pub local_addr: SocketAddr,
}

/// Settings of an HBONE server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTP/2 tuning (windows, frame and header limits).
    pub h2: H2Config,
    /// After a drain starts (GOAWAY sent), how long open tunnels may continue before the
    /// connection is closed.
    pub drain_period: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            h2: H2Config::default(),
            drain_period: DEFAULT_DRAIN_PERIOD,
        }
    }
}

/// Decides what to do with one validated `CONNECT`; runs in its own task per stream.
///
/// Implemented for every `Fn(ConnectRequest, Responder) -> impl Future<Output = ()>`.
pub trait ConnectHandler: Send + Sync + 'static {
    /// Handles one tunnel request: call [`Responder::accept`] or [`Responder::refuse`].
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl Future<Output = ()> + Send + 'static;
}

impl<F, Fut> ConnectHandler for F
where
    F: Fn(ConnectRequest, Responder) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(
        &self,
        req: ConnectRequest,
        responder: Responder,
    ) -> impl Future<Output = ()> + Send + 'static {
        self(req, responder)
    }
}

/// Answers one `CONNECT`. Dropping it without answering resets the stream (`CANCEL`).
pub struct Responder {
    send: SendResponse<Bytes>,
    recv: RecvStream,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    /// Sends `200` and returns the tunnel. Data the client sent before the 200 is delivered.
    pub fn accept(mut self) -> Result<H2Stream, ServeError> {
        let send = self
            .send
            .send_response(status_response(StatusCode::OK), false)
            .map_err(ServeError::Respond)?;
        Ok(H2Stream::new(send, self.recv))
    }

    /// Refuses the tunnel with `status` (e.g. 400, 401, 403, 503) and ends the stream.
    pub fn refuse(mut self, status: StatusCode) -> Result<(), ServeError> {
        self.send
            .send_response(status_response(status), true)
            .map(drop)
            .map_err(ServeError::Respond)
    }

    /// Resets the stream with `reason` instead of answering.
    pub fn reset(mut self, reason: Reason) {
        self.send.send_reset(reason);
    }
}

fn status_response(status: StatusCode) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    resp
}

/// Completes the TLS handshake of an accepted HBONE socket and learns who the client is.
/// Sets TCP_NODELAY (HBONE carries interactive traffic).
pub async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<(TlsStream<ReadBuffered<TcpStream>>, ConnInfo), ServeError> {
    let peer_addr = tcp.peer_addr().map_err(ServeError::SocketAddr)?;
    let local_addr = tcp.local_addr().map_err(ServeError::SocketAddr)?;
    // Nagle only delays small tunnel writes; failure to disable it is harmless.
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(timeout, acceptor.accept(ReadBuffered::new(tcp)))
        .await
        .map_err(|_| ServeError::HandshakeTimeout {
            peer: peer_addr,
            after: timeout,
        })?
        .map_err(|source| ServeError::TlsHandshake {
            peer: peer_addr,
            source,
        })?;
    let mut tls = tls;
    tls.get_mut()
        .1
        .set_buffer_limit(Some(crate::config::TLS_WRITE_BUFFER));
    let certs = tls.get_ref().1.peer_certificates().unwrap_or(&[]);
    let peer_identity =
        mesh_identity::tls::peer_identity(certs).map_err(|source| ServeError::PeerIdentity {
            peer: peer_addr,
            source: Box::new(source),
        })?;
    let info = ConnInfo {
        peer_identity,
        peer_addr,
        local_addr,
    };
    Ok((tls, info))
}

/// Serves HBONE on one established (TLS) connection until the client closes it or `drain`
/// fires. Each valid `CONNECT` is given to `handler` in a new task; invalid ones are answered
/// here (400, or a stream reset; h2 itself answers 431 and PROTOCOL_ERROR cases).
///
/// On `drain`: GOAWAY(NO_ERROR) is sent, open tunnels continue for `opts.drain_period`, then
/// the connection is closed.
pub async fn serve_connection<IO, H>(
    io: IO,
    info: ConnInfo,
    opts: &ServeOptions,
    drain: CancellationToken,
    handler: Arc<H>,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: ConnectHandler,
{
    let peer = info.peer_addr;
    let conn_info = Arc::new(info);
    let handshake = opts.h2.server_builder().handshake::<_, Bytes>(io);
    let mut conn = tokio::time::timeout(opts.h2.handshake_timeout, handshake)
        .await
        .map_err(|_| ServeError::HandshakeTimeout {
            peer,
            after: opts.h2.handshake_timeout,
        })?
        .map_err(|source| ServeError::H2Handshake { peer, source })?;

    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = conn.accept() => accepted,
            _ = drain.cancelled(), if deadline.is_none() => {
                debug!(%peer, "draining HBONE connection: GOAWAY sent");
                conn.graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + opts.drain_period);
                continue;
            }
            _ = sleep_until_opt(deadline) => {
                debug!(%peer, "drain period over: closing HBONE connection");
                conn.abrupt_shutdown(Reason::NO_ERROR);
                let closing = std::future::poll_fn(|cx| conn.poll_closed(cx));
                let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, closing).await;
                return Ok(());
            }
        };
        match accepted {
            None => return Ok(()),
            Some(Err(source)) => {
                // A client that hangs up between frames is an ordinary end of connection.
                if source.is_io()
                    || source.is_go_away() && source.reason() == Some(Reason::NO_ERROR)
                {
                    debug!(%peer, error = %source, "HBONE connection ended");
                    return Ok(());
                }
                return Err(ServeError::Connection { peer, source });
            }
            Some(Ok((req, send))) => dispatch(req, send, &conn_info, &handler),
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Validates one request and either answers it here or spawns the handler for it.
fn dispatch<H: ConnectHandler>(
    req: http::Request<RecvStream>,
    mut send: SendResponse<Bytes>,
    conn: &Arc<ConnInfo>,
    handler: &Arc<H>,
) {
    let stream_id = send.stream_id().as_u32();
    match request::parse(&req, conn) {
        Ok(parsed) => {
            let span = debug_span!("hbone", stream = stream_id, dst = %parsed.authority);
            let responder = Responder {
                send,
                recv: req.into_body(),
            };
            let fut = handler.handle(parsed, responder);
            tokio::spawn(fut.instrument(span));
        }
        Err(Rejection::Status(status, why)) => {
            debug!(stream = stream_id, %status, why, "refusing HBONE request");
            let _ = send.send_response(status_response(status), true);
        }
        Err(Rejection::Reset(reason, why)) => {
            debug!(stream = stream_id, ?reason, why, "resetting HBONE request");
            send.send_reset(reason);
        }
    }
}
