//! Inbound plaintext (15006): a client outside the mesh connects to an enrolled pod. Allowed unless the
//! workload is STRICT; L4 policy applies with no identity (DESIGN.md 3, flow 4).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mesh_api::{ConnAttrs, MtlsMode};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::addr::{ClientAddr, OrigDst};
use super::connector::connect_app;
use super::inbound::{InboundError, authorize};
use super::listeners::PROXY_PORTS;
use super::resolve::DstNames;
use super::{PodContext, labels};
use crate::metrics::Reporter;
use crate::socket::original_dst;
use crate::telemetry::{AccessLog, Direction};

/// Why a plaintext connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlainError {
    /// No original destination on the socket.
    #[error("no original destination on the captured socket: {0}")]
    OrigDst(crate::socket::SocketError),
    /// PeerAuthentication STRICT: plaintext is not allowed.
    #[error("plaintext connection refused: workload {0} requires mTLS (PeerAuthentication STRICT)")]
    Strict(String),
    /// A policy or target check refused it.
    #[error(transparent)]
    Refused(#[from] InboundError),
}

/// Handles one captured plaintext inbound connection, writing one access-log record.
pub async fn handle(ctx: Arc<PodContext>, stream: TcpStream, client: ClientAddr) {
    let start = Instant::now();
    let orig = original_dst(&stream).map(OrigDst);
    let dst_addr = orig.as_ref().map(|o| o.0).unwrap_or(client.0);
    let span =
        tracing::debug_span!("inbound_plain", pod = %ctx.info.name, src = %client, dst = %dst_addr);
    async move {
        let mut log = AccessLog::new(client.0, dst_addr, Direction::Inbound);
        log.dst_workload = Some(ctx.info.name.clone());
        let result = match orig {
            Ok(orig) => run(&ctx, stream, client, orig, &mut log).await,
            Err(e) => Err(PlainError::OrigDst(e)),
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
) -> Result<(), PlainError> {
    let target: SocketAddr = orig.0;
    if PROXY_PORTS.contains(&target.port()) {
        return Err(InboundError::ProxyPort(target).into());
    }
    let snap = ctx.proxy.state.snapshot();
    let w = snap
        .workload_by_ip(target.ip())
        .ok_or(InboundError::UnknownWorkload(target.ip()))?;
    if snap.mtls_mode_for_port(w, target.port()) == MtlsMode::Strict {
        return Err(PlainError::Strict(w.name.clone()));
    }
    let attrs = ConnAttrs {
        src_identity: None,
        src_ip: client.0.ip(),
        dst_ip: target.ip(),
        dst_port: target.port(),
    };
    if let Err(e) = authorize(&snap, w, &attrs) {
        if let InboundError::Denied(reason) = &e {
            log.reason = Some(reason.clone());
        }
        return Err(e.into());
    }
    let src = labels::peer(snap.workload_by_ip(client.0.ip()), None);
    let dst = labels::peer(Some(w), Some(ctx.identity.to_string()));
    let names = DstNames {
        workload: Some((w.name.clone(), w.namespace.clone())),
        ..DstNames::default()
    };
    let metrics = ctx.proxy.metrics.connection(labels::traffic(
        Reporter::Destination,
        &src,
        &dst,
        &names,
        false,
    ));
    drop(snap);
    let cc = ctx.proxy.tunnel_congestion.clone();
    let mut app = connect_app(&ctx.netns, target, client.0.ip(), cc)
        .await
        .map_err(|e| InboundError::App(target, e))?;
    let copied = tokio::io::copy_bidirectional(&mut stream, &mut app).await;
    let (from_client, to_client) = copied.as_ref().map(|(a, b)| (*a, *b)).unwrap_or((0, 0));
    metrics.add_received(from_client);
    metrics.add_sent(to_client);
    let (sent, recv) = metrics.access_log_bytes();
    log.bytes_sent = sent;
    log.bytes_recv = recv;
    copied
        .map(drop)
        .map_err(|e| InboundError::Copy(e.to_string()).into())
}
