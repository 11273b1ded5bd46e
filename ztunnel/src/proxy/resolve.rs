//! Outbound resolution: from a captured connection's original destination to where its tunnel goes.
//! Pure logic over a config snapshot, so every case is unit-tested without sockets.

use std::net::{IpAddr, SocketAddr};

use mesh_api::{ConfigSnapshot, Protocol, Service, WaypointRef, Workload};
use mesh_identity::SpiffeId;

use super::addr::OrigDst;

/// Port of HBONE on every mesh pod and waypoint (DESIGN.md 3).
pub const HBONE_PORT: u16 = 15008;

/// Why a destination could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The service exists but none of its endpoints can take traffic.
    #[error("service {0} has no healthy endpoint")]
    NoHealthyEndpoint(String),
    /// The service does not expose the port the client dialled.
    #[error("service {0} has no port {1}")]
    UnknownServicePort(String, u16),
    /// A waypoint is configured at an address no known workload has, so its identity cannot be checked.
    #[error(
        "waypoint {0} is not a known workload; refusing to send traffic to an unverifiable proxy"
    )]
    UnknownWaypoint(IpAddr),
}

/// Names of the destination, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DstNames {
    /// `<name>.<namespace>.svc.<domain>` when the client dialled a service.
    pub service: Option<String>,
    /// Destination service name and namespace.
    pub service_name: Option<(String, String)>,
    /// Destination workload name and namespace.
    pub workload: Option<(String, String)>,
}

/// Where a captured outbound connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// An HBONE tunnel: TLS to `via` (a ztunnel or waypoint on 15008), CONNECT to `authority`.
    Hbone {
        /// Address of the HBONE server.
        via: SocketAddr,
        /// Target named in the CONNECT request.
        authority: SocketAddr,
        /// Identity the server must prove.
        identity: SpiffeId,
        /// Whether `via` is a waypoint.
        waypoint: bool,
        /// Names for telemetry.
        names: DstNames,
    },
    /// Plain TCP to a destination outside the mesh (or a workload not enrolled).
    Passthrough {
        /// Where to connect.
        addr: SocketAddr,
        /// Names for telemetry.
        names: DstNames,
    },
}

/// Resolves `orig`; `pick(n)` chooses an index below `n` (load balancing across endpoints).
pub fn resolve(
    snap: &ConfigSnapshot,
    orig: OrigDst,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Result<Upstream, ResolveError> {
    let dst = orig.0;
    if let Some(svc) = snap.service_by_vip(dst.ip()) {
        return resolve_service(snap, svc, dst, pick);
    }
    if let Some(w) = snap.workload_by_ip(dst.ip()) {
        let names = DstNames {
            workload: Some((w.name.clone(), w.namespace.clone())),
            ..Default::default()
        };
        if let Some(wp) = &w.waypoint {
            return via_waypoint(snap, wp, dst, names);
        }
        return Ok(to_workload(w, dst.ip(), dst.port(), names));
    }
    Ok(Upstream::Passthrough {
        addr: dst,
        names: DstNames::default(),
    })
}

fn resolve_service(
    snap: &ConfigSnapshot,
    svc: &Service,
    dst: SocketAddr,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Result<Upstream, ResolveError> {
    let mut names = DstNames {
        service: Some(svc.hostname.clone()),
        service_name: Some((svc.name.clone(), svc.namespace.clone())),
        workload: None,
    };
    if let Some(wp) = &svc.waypoint {
        // The waypoint gets the original VIP:port and does its own L7 load balancing.
        return via_waypoint(snap, wp, dst, names);
    }
    let port = svc
        .ports
        .iter()
        .find(|p| p.port == dst.port())
        .ok_or_else(|| ResolveError::UnknownServicePort(svc.hostname.clone(), dst.port()))?;
    let endpoints: Vec<&Workload> = snap
        .service_endpoints(svc)
        .filter(|w| first_ip(w, dst.ip()).is_some())
        .collect();
    if endpoints.is_empty() {
        return Err(ResolveError::NoHealthyEndpoint(svc.hostname.clone()));
    }
    let w = endpoints[pick(endpoints.len()) % endpoints.len()];
    names.workload = Some((w.name.clone(), w.namespace.clone()));
    let ip = first_ip(w, dst.ip())
        .ok_or_else(|| ResolveError::NoHealthyEndpoint(svc.hostname.clone()))?;
    Ok(to_workload(w, ip, port.target_port, names))
}

fn to_workload(w: &Workload, ip: IpAddr, port: u16, names: DstNames) -> Upstream {
    let target = SocketAddr::new(ip, port);
    match w.protocol {
        Protocol::Hbone => Upstream::Hbone {
            via: SocketAddr::new(ip, HBONE_PORT),
            authority: target,
            identity: workload_identity(w),
            waypoint: false,
            names,
        },
        Protocol::Tcp => Upstream::Passthrough {
            addr: target,
            names,
        },
    }
}

fn via_waypoint(
    snap: &ConfigSnapshot,
    wp: &WaypointRef,
    dst: SocketAddr,
    names: DstNames,
) -> Result<Upstream, ResolveError> {
    let w = snap
        .workload_by_ip(wp.address)
        .ok_or(ResolveError::UnknownWaypoint(wp.address))?;
    Ok(Upstream::Hbone {
        via: SocketAddr::new(wp.address, wp.port),
        authority: dst,
        identity: workload_identity(w),
        waypoint: true,
        names,
    })
}

/// An address of `w` in the same family as `like`.
fn first_ip(w: &Workload, like: IpAddr) -> Option<IpAddr> {
    w.addresses
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == like.is_ipv4())
}

/// The SPIFFE identity of a workload.
/// Whether `id` is `w`'s identity; compares in place, unlike `workload_identity(w) == *id`, which
/// allocates (this runs for every inbound tunnel).
pub fn is_identity_of(w: &Workload, id: &SpiffeId) -> bool {
    w.trust_domain == id.trust_domain
        && w.namespace == id.namespace
        && w.service_account == id.service_account
}

/// The SPIFFE identity of workload `w`.
pub fn workload_identity(w: &Workload) -> SpiffeId {
    SpiffeId::new(
        w.trust_domain.clone(),
        w.namespace.clone(),
        w.service_account.clone(),
    )
}

#[cfg(test)]
#[path = "resolve/tests.rs"]
mod tests;
