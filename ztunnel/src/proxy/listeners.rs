//! A pod's three listeners, opened inside its network namespace, and their accept loops.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{PodContext, addr::ClientAddr, inbound, inbound_plain, outbound};
use crate::socket::{ListenerBuilder, SocketError, ZTUNNEL_MARK};

/// Outbound capture port (DESIGN.md 3).
pub const OUTBOUND_PORT: u16 = 15001;
/// Inbound plaintext capture port.
pub const INBOUND_PLAIN_PORT: u16 = 15006;
/// Inbound HBONE port.
pub const INBOUND_HBONE_PORT: u16 = 15008;
/// Ports of ztunnel itself inside a pod: never a valid tunnel target.
pub const PROXY_PORTS: [u16; 3] = [OUTBOUND_PORT, INBOUND_PLAIN_PORT, INBOUND_HBONE_PORT];
/// Pause after an accept error (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// The listeners of one pod.
pub struct PodListeners {
    outbound: TcpListener,
    inbound: TcpListener,
    plain: TcpListener,
}

/// Opens 15001, 15006 and 15008 inside the pod (SO_REUSEPORT so a new ztunnel can take over, SO_MARK).
pub async fn open(ctx: &PodContext) -> Result<PodListeners, (SocketAddr, io::Error)> {
    let mut out = Vec::with_capacity(3);
    for port in PROXY_PORTS {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let std = ctx
            .netns
            .run_async(move || -> Result<_, SocketError> {
                ListenerBuilder::new(addr)
                    .mark(ZTUNNEL_MARK)
                    .reuse_port(true)
                    .build()
            })
            .await
            .map_err(|e| (addr, io::Error::other(e)))?;
        out.push(TcpListener::from_std(std).map_err(|e| (addr, e))?);
    }
    let mut it = out.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(outbound), Some(plain), Some(inbound)) => Ok(PodListeners {
            outbound,
            inbound,
            plain,
        }),
        _ => Err((
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            io::Error::other("listener missing"),
        )),
    }
}

/// Starts the accept loops; they end when `stop` is cancelled.
pub fn spawn(ctx: Arc<PodContext>, l: PodListeners, stop: CancellationToken) {
    tokio::spawn(accept_loop(
        ctx.clone(),
        l.outbound,
        stop.clone(),
        |ctx, s, peer| {
            tokio::spawn(outbound::handle(ctx, s, peer));
        },
    ));
    tokio::spawn(accept_loop(
        ctx.clone(),
        l.inbound,
        stop.clone(),
        |ctx, s, peer| {
            tokio::spawn(inbound::handle(ctx, s, peer));
        },
    ));
    tokio::spawn(accept_loop(ctx, l.plain, stop, |ctx, s, peer| {
        tokio::spawn(inbound_plain::handle(ctx, s, peer));
    }));
}

async fn accept_loop(
    ctx: Arc<PodContext>,
    listener: TcpListener,
    stop: CancellationToken,
    on_accept: fn(Arc<PodContext>, tokio::net::TcpStream, ClientAddr),
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => on_accept(ctx.clone(), stream, ClientAddr(peer)),
            Err(e) => {
                tracing::warn!(pod = %ctx.info.name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
