//! Inbound HBONE (15008): verify the peer, check the CONNECT target is this pod, apply L4 authorization,
//! connect to the application and relay.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use mesh_api::{ConfigSnapshot, ConnAttrs, Decision, PeerIdentity, Workload};
use mesh_identity::SpiffeId;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::addr::ClientAddr;
use super::connector::connect_app;
use super::listeners::PROXY_PORTS;
use super::resolve::{DstNames, is_identity_of, workload_identity};
use super::{PodContext, TLS_HANDSHAKE_TIMEOUT, labels};
use crate::metrics::Reporter;
use crate::telemetry::{AccessLog, Direction};

/// Why an inbound tunnel was refused; each maps to the status the client sees.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The CONNECT authority is not an address of the pod the connection was made to.
    #[error("CONNECT target {authority} is not this pod ({local})")]
    WrongDestination {
        /// Requested target.
        authority: SocketAddr,
        /// Where the connection arrived.
        local: SocketAddr,
    },
    /// The target is one of ztunnel's own ports.
    #[error("CONNECT target {0} is a proxy port")]
    ProxyPort(SocketAddr),
    /// The destination workload is not in the config: fail closed.
    #[error("no workload with address {0} in the config")]
    UnknownWorkload(std::net::IpAddr),
    /// The workload uses a waypoint and the client is not it.
    #[error("workload {workload} only accepts traffic from its waypoint ({waypoint}), not {peer}")]
    NotFromWaypoint {
        /// Destination workload.
        workload: String,
        /// Expected identity.
        waypoint: String,
        /// Actual peer.
        peer: String,
    },
    /// Authorization policy denied the connection.
    #[error("denied: {0}")]
    Denied(String),
    /// The application is not reachable.
    #[error("cannot connect to application at {0}: {1}")]
    App(SocketAddr, std::io::Error),
    /// Answering the client failed.
    #[error("cannot answer the CONNECT: {0}")]
    Respond(String),
    /// Relaying failed.
    #[error("relay failed: {0}")]
    Copy(String),
}

impl InboundError {
    fn status(&self) -> StatusCode {
        match self {
            Self::WrongDestination { .. } => StatusCode::BAD_REQUEST,
            Self::ProxyPort(_) | Self::App(..) | Self::UnknownWorkload(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotFromWaypoint { .. } | Self::Denied(_) => StatusCode::UNAUTHORIZED,
            Self::Respond(_) | Self::Copy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Handles one TCP connection on 15008: TLS, then HBONE streams until the client closes it.
pub async fn handle(ctx: Arc<PodContext>, tcp: TcpStream, client: ClientAddr) {
    let span = tracing::debug_span!("inbound_hbone", pod = %ctx.info.name, src = %client);
    async move {
        let start = Instant::now();
        let local = tcp.local_addr().unwrap_or(client.0);
        // Waits (without blocking the worker) only when the pod has no certificate yet.
        if let Err(e) = ctx.proxy.certs.ready(&ctx.identity).await {
            return failed_conn(client, local, start, e.to_string());
        }
        let config = match ctx.proxy.certs.server_config(&ctx.identity) {
            Ok(c) => c,
            Err(e) => return failed_conn(client, local, start, e.to_string()),
        };
        let acceptor = TlsAcceptor::from(config);
        let (tls, info) = match hbone::accept_tls(&acceptor, tcp, TLS_HANDSHAKE_TIMEOUT).await {
            Ok(ok) => ok,
            Err(e) => return failed_conn(client, local, start, e.to_string()),
        };
        let handler_ctx = ctx.clone();
        let handler = Arc::new(
            move |req: hbone::ConnectRequest, responder: hbone::Responder| {
                let ctx = handler_ctx.clone();
                async move { tunnel(ctx, req, responder).await }
            },
        );
        let drain = ctx.proxy.drain.child_token();
        if let Err(e) = hbone::serve_connection(tls, info, &ctx.proxy.serve, drain, handler).await {
            tracing::debug!(error = %e, "HBONE connection ended with an error");
        }
    }
    .instrument(span)
    .await
}

/// A connection that never got to carry a tunnel (TLS failed): one access-log record.
fn failed_conn(client: ClientAddr, local: SocketAddr, start: Instant, error: String) {
    AccessLog::new(client.0, local, Direction::Inbound).finish(start, Err(error));
}

/// One CONNECT stream: one tunnel, one access-log record.
async fn tunnel(ctx: Arc<PodContext>, req: hbone::ConnectRequest, responder: hbone::Responder) {
    let start = Instant::now();
    let peer = req.conn.peer_identity.clone();
    let src_addr = req.forwarded_for.unwrap_or(req.conn.peer_addr);
    let span = tracing::debug_span!("tunnel", src = %src_addr, dst = %req.authority, peer = %peer);
    async move {
        let mut log = AccessLog::new(src_addr, req.authority, Direction::Inbound);
        log.src_identity = Some(peer.to_string());
        log.dst_identity = Some(ctx.identity.to_string());
        log.dst_workload = Some(ctx.info.name.clone());
        let result = serve_tunnel(&ctx, &req, responder, &mut log).await;
        log.finish(start, result);
    }
    .instrument(span)
    .await
}

async fn serve_tunnel(
    ctx: &PodContext,
    req: &hbone::ConnectRequest,
    responder: hbone::Responder,
    log: &mut AccessLog,
) -> Result<(), InboundError> {
    let snap = ctx.proxy.state.snapshot();
    let checked = check(&snap, req);
    let src_w = snap.workload_by_ip(req.conn.peer_addr.ip());
    // The peer's workload labels only when its address and identity agree (a waypoint relays others').
    let src_w = src_w.filter(|w| is_identity_of(w, &req.conn.peer_identity));
    let src = labels::peer(src_w, Some(req.conn.peer_identity.to_string()));
    let dst_w = snap.workload_by_ip(req.authority.ip());
    let client = original_client(&snap, dst_w, req);
    let dst = labels::peer(dst_w, Some(ctx.identity.to_string()));
    let names = DstNames {
        workload: dst_w.map(|w| (w.name.clone(), w.namespace.clone())),
        ..DstNames::default()
    };
    let metrics = ctx.proxy.metrics.connection(labels::traffic(
        Reporter::Destination,
        &src,
        &dst,
        &names,
        true,
    ));
    drop(snap);
    if let Err(e) = checked {
        if let InboundError::Denied(reason) = &e {
            log.reason = Some(reason.clone());
        }
        // The refusal itself is the answer; a failure to send it changes nothing for the client.
        let _ = responder.refuse(e.status());
        return Err(e);
    }
    let cc = ctx.proxy.tunnel_congestion.clone();
    let app = match connect_app(&ctx.netns, req.authority, client, cc).await {
        Ok(s) => s,
        Err(e) => {
            let e = InboundError::App(req.authority, e);
            let _ = responder.refuse(e.status());
            return Err(e);
        }
    };
    let tunnel = responder
        .accept()
        .map_err(|e| InboundError::Respond(e.to_string()))?;
    let copied = hbone::relay_tcp(app, tunnel, ctx.proxy.workers.offload_target()).await;
    let t = match &copied {
        Ok(t) => *t,
        Err(e) => e.transferred(),
    };
    // Reporter destination: received = from the client (out of the tunnel), sent = back to it.
    metrics.add_received(t.from_tunnel);
    metrics.add_sent(t.to_tunnel);
    let (sent, recv) = metrics.access_log_bytes();
    log.bytes_sent = sent;
    log.bytes_recv = recv;
    copied
        .map(drop)
        .map_err(|e| InboundError::Copy(e.to_string()))
}

/// Whether `peer` is a waypoint of `w`: the workload's own, or one of a service that has `w` as an
/// endpoint (the waypoint's identity is that of the workload at the waypoint's address).
fn from_waypoint_of(snap: &ConfigSnapshot, w: &Workload, peer: &SpiffeId) -> bool {
    let is_peer = |wp: &Option<mesh_api::WaypointRef>| {
        wp.as_ref()
            .and_then(|wp| snap.workload_by_ip(wp.address))
            .is_some_and(|ww| is_identity_of(ww, peer))
    };
    is_peer(&w.waypoint)
        || snap
            .services_for_workload(&w.uid)
            .any(|s| is_peer(&s.waypoint))
}

/// The address the application should see as its client: the HBONE peer (a client pod connects
/// from its own address, and its `forwarded` names that address too), or, when the peer is a
/// waypoint of the destination `dst_w`, the client the waypoint names in `forwarded`. Any other
/// peer's claim about another host is not believed. The waypoint lookup runs only for such a
/// claim, so ordinary tunnels pay nothing for it.
fn original_client(
    snap: &ConfigSnapshot,
    dst_w: Option<&Workload>,
    req: &hbone::ConnectRequest,
) -> IpAddr {
    let peer = req.conn.peer_addr.ip();
    match req.forwarded_for {
        Some(claim)
            if claim.ip() != peer
                && dst_w.is_some_and(|w| from_waypoint_of(snap, w, &req.conn.peer_identity)) =>
        {
            claim.ip()
        }
        _ => peer,
    }
}

/// Everything decided before connecting to the application.
fn check(snap: &ConfigSnapshot, req: &hbone::ConnectRequest) -> Result<(), InboundError> {
    if !req.authority_matches_local() {
        return Err(InboundError::WrongDestination {
            authority: req.authority,
            local: req.conn.local_addr,
        });
    }
    if PROXY_PORTS.contains(&req.authority.port()) {
        return Err(InboundError::ProxyPort(req.authority));
    }
    let ip = req.authority.ip();
    let w = snap
        .workload_by_ip(ip)
        .ok_or(InboundError::UnknownWorkload(ip))?;
    check_waypoint(snap, w, &req.conn.peer_identity)?;
    let attrs = ConnAttrs {
        src_identity: Some(peer_identity(&req.conn.peer_identity)),
        src_ip: req.conn.peer_addr.ip(),
        dst_ip: ip,
        dst_port: req.authority.port(),
    };
    authorize(snap, w, &attrs)
}

/// A workload with a waypoint takes HBONE only from that waypoint.
fn check_waypoint(
    snap: &ConfigSnapshot,
    w: &Workload,
    peer: &SpiffeId,
) -> Result<(), InboundError> {
    let Some(wp) = &w.waypoint else { return Ok(()) };
    let waypoint = snap.workload_by_ip(wp.address);
    if waypoint.is_some_and(|ww| is_identity_of(ww, peer)) {
        return Ok(());
    }
    let expected = waypoint.map(workload_identity);
    Err(InboundError::NotFromWaypoint {
        workload: w.name.clone(),
        waypoint: expected
            .map(|e| e.to_string())
            .unwrap_or_else(|| wp.address.to_string()),
        peer: peer.to_string(),
    })
}

/// L4 authorization of `attrs` against the policies that apply to `w`.
pub fn authorize(
    snap: &ConfigSnapshot,
    w: &Workload,
    attrs: &ConnAttrs,
) -> Result<(), InboundError> {
    let policies = snap.policies_for(w);
    match mesh_api::authz::evaluate(&policies, attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(InboundError::Denied(reason.to_string())),
    }
}

fn peer_identity(id: &SpiffeId) -> PeerIdentity {
    PeerIdentity::new(&id.trust_domain, &id.namespace, &id.service_account)
}

#[cfg(test)]
mod tests;
