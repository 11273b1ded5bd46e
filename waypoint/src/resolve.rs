//! What a tunnel is for (the CONNECT authority: a service VIP:port or a workload IP:port) and
//! which endpoints a service port has.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use mesh_api::{Protocol, Service, Workload};
use mesh_identity::SpiffeId;

use crate::state::Mesh;
use crate::upstream::Endpoint;

/// Why a destination cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The authority is neither a known service VIP nor a known workload.
    #[error(
        "{0} is not a service VIP or workload address known to this waypoint (check the config)"
    )]
    Unknown(SocketAddr),
    /// The service does not expose the port.
    #[error("service {0} has no port {1}")]
    NoPort(String, u16),
    /// A backend names a service that does not exist.
    #[error("backend service {0}/{1} does not exist")]
    NoService(String, String),
    /// The service has no endpoint.
    #[error("no healthy upstream for {0}")]
    NoEndpoint(String),
}

/// The destination of a tunnel, from its CONNECT authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A service port.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// FQDN.
        hostname: String,
        /// The service port dialed.
        port: u16,
        /// Its `appProtocol`, if declared.
        app_protocol: Option<String>,
    },
    /// A workload addressed directly (workload-bound waypoint).
    Workload {
        /// The endpoint.
        endpoint: Endpoint,
        /// Workload name.
        name: String,
        /// Workload namespace.
        namespace: String,
    },
}

/// An endpoint picked for a request, with names for telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Workload name.
    pub workload: String,
    /// Workload namespace.
    pub namespace: String,
}

/// The SPIFFE identity of a mesh workload (`None` for workloads outside the mesh).
pub fn workload_identity(w: &Workload) -> Option<SpiffeId> {
    (w.protocol == Protocol::Hbone).then(|| {
        SpiffeId::new(
            w.trust_domain.clone(),
            w.namespace.clone(),
            w.service_account.clone(),
        )
    })
}

/// Resolves the CONNECT authority of a tunnel.
pub fn target(mesh: &Mesh, authority: SocketAddr) -> Result<Target, ResolveError> {
    let snap = &mesh.snapshot;
    if let Some(svc) = snap.service_by_vip(authority.ip()) {
        let port = svc
            .port(authority.port())
            .ok_or_else(|| ResolveError::NoPort(svc.hostname.clone(), authority.port()))?;
        return Ok(Target::Service {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            hostname: svc.hostname.clone(),
            port: port.port,
            app_protocol: port.app_protocol.clone(),
        });
    }
    if let Some(w) = snap.workload_by_ip(authority.ip()) {
        return Ok(Target::Workload {
            endpoint: Endpoint {
                addr: authority,
                identity: workload_identity(w),
            },
            name: w.name.clone(),
            namespace: w.namespace.clone(),
        });
    }
    Err(ResolveError::Unknown(authority))
}

/// An address of `w` in the family of `like` (or its first address).
fn address(w: &Workload, like: Option<IpAddr>) -> Option<IpAddr> {
    let same = like.and_then(|l| {
        w.addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == l.is_ipv4())
    });
    same.or_else(|| w.addresses.first().copied())
}

/// Every endpoint of service `namespace/name` for service port `port`.
pub fn endpoints<'m>(
    mesh: &'m Mesh,
    namespace: &str,
    name: &str,
    port: u16,
    subset: Option<&BTreeMap<String, String>>,
) -> Result<(&'m Service, Vec<Picked>), ResolveError> {
    let svc = mesh
        .service(namespace, name)
        .ok_or_else(|| ResolveError::NoService(namespace.into(), name.into()))?;
    let target_port = svc
        .port(port)
        .map(|p| p.target_port)
        .ok_or_else(|| ResolveError::NoPort(svc.hostname.clone(), port))?;
    let like = svc.vips.first().copied();
    let eps = mesh
        .snapshot
        .service_endpoints(svc)
        .filter(|w| subset.is_none_or(|s| s.iter().all(|(k, v)| w.labels.get(k) == Some(v))))
        .filter_map(|w| {
            Some(Picked {
                endpoint: Endpoint {
                    addr: SocketAddr::new(address(w, like)?, target_port),
                    identity: workload_identity(w),
                },
                workload: w.name.clone(),
                namespace: w.namespace.clone(),
            })
        })
        .collect();
    Ok((svc, eps))
}
