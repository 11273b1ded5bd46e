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

/// The listeners of one pod for one worker (not yet registered with any runtime: each set is
/// adopted by the worker that serves it).
pub struct PodListeners {
    outbound: std::net::TcpListener,
    inbound: std::net::TcpListener,
    plain: std::net::TcpListener,
}

/// Opens 15001, 15006 and 15008 inside the pod once per data-path worker (SO_REUSEPORT: the
/// kernel spreads connections over the workers, and a new ztunnel can take over; SO_MARK).
pub fn open(ctx: &PodContext) -> Result<Vec<PodListeners>, (SocketAddr, io::Error)> {
    (0..ctx.proxy.workers.len())
        .map(|_| open_set(ctx))
        .collect()
}

fn open_set(ctx: &PodContext) -> Result<PodListeners, (SocketAddr, io::Error)> {
    let bind = |port: u16| {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        // HBONE and the pod's own applications get ztunnel's congestion control; 15006 serves
        // plaintext clients from anywhere, which keep the kernel's default.
        let congestion = ctx
            .proxy
            .tunnel_congestion
            .clone()
            .filter(|_| port != INBOUND_PLAIN_PORT);
        ctx.netns
            .run(move || -> Result<_, SocketError> {
                ListenerBuilder::new(addr)
                    .mark(ZTUNNEL_MARK)
                    .reuse_port(true)
                    .congestion(congestion)
                    .build()
            })
            .map_err(|e| (addr, io::Error::other(e)))
    };
    Ok(PodListeners {
        outbound: bind(OUTBOUND_PORT)?,
        plain: bind(INBOUND_PLAIN_PORT)?,
        inbound: bind(INBOUND_HBONE_PORT)?,
    })
}

/// Starts the accept loops of every set on its worker; they end when `stop` is cancelled.
pub fn spawn(ctx: Arc<PodContext>, sets: Vec<PodListeners>, stop: CancellationToken) {
    let handles = ctx.proxy.workers.handles().to_vec();
    for (set, handle) in sets.into_iter().zip(handles) {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        handle.spawn(async move { serve_set(ctx, set, stop) });
    }
}

/// Runs on the worker: adopts the listeners into its runtime and starts their accept loops there.
fn serve_set(ctx: Arc<PodContext>, l: PodListeners, stop: CancellationToken) {
    let adopt = |std: std::net::TcpListener| {
        let addr = std.local_addr().ok();
        TcpListener::from_std(std).map_err(|e| (addr, e))
    };
    let (outbound_l, inbound_l, plain_l) =
        match (adopt(l.outbound), adopt(l.inbound), adopt(l.plain)) {
            (Ok(o), Ok(i), Ok(p)) => (o, i, p),
            (Err((addr, e)), ..) | (_, Err((addr, e)), _) | (.., Err((addr, e))) => {
                tracing::error!(pod = %ctx.info.name, ?addr, error = %e, "cannot adopt a listener");
                return;
            }
        };
    tokio::spawn(accept_loop(
        ctx.clone(),
        outbound_l,
        stop.clone(),
        |ctx, s, peer| {
            tokio::spawn(outbound::handle(ctx, s, peer));
        },
    ));
    tokio::spawn(accept_loop(
        ctx.clone(),
        inbound_l,
        stop.clone(),
        |ctx, s, peer| {
            tokio::spawn(inbound::handle(ctx, s, peer));
        },
    ));
    tokio::spawn(accept_loop(ctx, plain_l, stop, |ctx, s, peer| {
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
