//! Outbound (15001): a pod's captured connection goes to its original destination, over HBONE with the pod's
//! identity when the destination is in the mesh, in plain TCP otherwise.

use std::sync::Arc;
use std::time::Instant;

use hbone::{PoolKey, TunnelRequest};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::addr::{ClientAddr, OrigDst};
use super::connector::connect_in_pod;
use super::resolve::{self, Upstream};
use super::{PodContext, labels};
use crate::metrics::{ConnectionMetrics, Reporter};
use crate::socket::original_dst;
use crate::telemetry::{AccessLog, Direction};

/// Why an outbound connection failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The socket has no original destination (it was not redirected by our rules).
    #[error("no original destination on the captured socket: {0}")]
    OrigDst(crate::socket::SocketError),
    /// The destination could not be resolved.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// The HBONE tunnel could not be opened.
    #[error("HBONE tunnel to {via} for {authority} failed: {source}")]
    Tunnel {
        /// HBONE server.
        via: std::net::SocketAddr,
        /// Target in CONNECT.
        authority: std::net::SocketAddr,
        /// Cause.
        source: hbone::PoolError,
    },
    /// Plain TCP to a destination outside the mesh failed.
    #[error("passthrough connect to {0} failed: {1}")]
    Passthrough(std::net::SocketAddr, std::io::Error),
    /// Relaying bytes failed.
    #[error("relay failed: {0}")]
    Copy(String),
}

/// Handles one captured outbound connection, writing one access-log record.
pub async fn handle(ctx: Arc<PodContext>, stream: TcpStream, client: ClientAddr) {
    let start = Instant::now();
    let orig = original_dst(&stream).map(OrigDst);
    let dst_addr = orig.as_ref().map(|o| o.0).unwrap_or(client.0);
    let span =
        tracing::debug_span!("outbound", pod = %ctx.info.name, src = %client, dst = %dst_addr);
    async move {
        let mut log = AccessLog::new(client.0, dst_addr, Direction::Outbound);
        log.src_identity = Some(ctx.identity.to_string());
        log.src_workload = Some(ctx.info.name.clone());
        let result = match orig {
            Ok(orig) => run(&ctx, stream, client, orig, &mut log).await,
            Err(e) => Err(OutboundError::OrigDst(e)),
        };
        log.finish(start, result);
    }
    .instrument(span)
    .await
}

async fn run(
    ctx: &PodContext,
    mut stream: TcpStream,
    client: ClientAddr,
    orig: OrigDst,
    log: &mut AccessLog,
) -> Result<(), OutboundError> {
    let snap = ctx.proxy.state.snapshot();
    let upstream = resolve::resolve(&snap, orig, &mut |n| rand::random_range(0..n.max(1)))?;
    let src_w = snap.workload_by_ip(client.0.ip());
    let src = labels::peer(src_w, Some(ctx.identity.to_string()));
    match upstream {
        Upstream::Hbone {
            via,
            authority,
            identity,
            waypoint: _,
            names,
        } => {
            let dst_w = snap.workload_by_ip(authority.ip());
            let dst = labels::peer(dst_w, Some(identity.to_string()));
            let metrics = ctx.proxy.metrics.connection(labels::traffic(
                Reporter::Source,
                &src,
                &dst,
                &names,
                true,
            ));
            log.dst_addr = authority;
            log.dst_hbone_addr = Some(via);
            log.dst_service = names.service.clone();
            log.dst_workload = names.workload.as_ref().map(|(n, _)| n.clone());
            log.dst_identity = Some(identity.to_string());
            let key = PoolKey {
                src_ip: client.0.ip(),
                src_identity: ctx.identity.clone(),
                dst_identity: identity,
                dst: via,
            };
            let mut req = TunnelRequest::new(authority);
            req.forwarded_for = Some(client.0);
            drop(snap);
            let tunnel =
                ctx.pool()
                    .connect(&key, &req)
                    .await
                    .map_err(|source| OutboundError::Tunnel {
                        via,
                        authority,
                        source,
                    })?;
            let offload = ctx.proxy.workers.offload_target();
            let copied = hbone::relay_tcp(stream, tunnel, offload).await;
            let t = match &copied {
                Ok(t) => *t,
                Err(e) => e.transferred(),
            };
            account(&metrics, log, t.to_tunnel, t.from_tunnel);
            copied
                .map(drop)
                .map_err(|e| OutboundError::Copy(e.to_string()))
        }
        Upstream::Passthrough { addr, names } => {
            let dst_w = snap.workload_by_ip(addr.ip());
            let dst = labels::peer(dst_w, None);
            let metrics = ctx.proxy.metrics.connection(labels::traffic(
                Reporter::Source,
                &src,
                &dst,
                &names,
                false,
            ));
            log.dst_addr = addr;
            log.dst_service = names.service.clone();
            log.dst_workload = names.workload.as_ref().map(|(n, _)| n.clone());
            drop(snap);
            let mut upstream = connect_in_pod(&ctx.netns, addr)
                .await
                .map_err(|e| OutboundError::Passthrough(addr, e))?;
            let copied = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
            let (up, down) = copied.as_ref().map(|(a, b)| (*a, *b)).unwrap_or((0, 0));
            account(&metrics, log, up, down);
            copied
                .map(drop)
                .map_err(|e| OutboundError::Copy(e.to_string()))
        }
    }
}

/// Records bytes: `from_client` is what the local application sent, `to_client` what it received.
fn account(metrics: &ConnectionMetrics, log: &mut AccessLog, from_client: u64, to_client: u64) {
    metrics.add_received(from_client);
    metrics.add_sent(to_client);
    let (sent, recv) = metrics.access_log_bytes();
    log.bytes_sent = sent;
    log.bytes_recv = recv;
}
