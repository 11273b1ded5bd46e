//! Metric label sets of one connection, from what the config knows about its two ends.

use mesh_api::Workload;

use super::resolve::DstNames;
use crate::metrics::{PeerLabels, Reporter, SecurityPolicy, TrafficLabels};

/// Labels of a workload known to the config; `principal` only when verified by mTLS.
pub fn peer(w: Option<&Workload>, principal: Option<String>) -> PeerLabels {
    let mut p = PeerLabels {
        principal: principal.into(),
        ..PeerLabels::default()
    };
    if let Some(w) = w {
        p.workload = w.name.as_str().into();
        p.namespace = w.namespace.as_str().into();
        p.canonical_service = w.canonical_name().into();
        p.canonical_revision = w.canonical_revision().into();
    }
    p
}

/// The full label set for one connection.
pub fn traffic(
    reporter: Reporter,
    src: &PeerLabels,
    dst: &PeerLabels,
    names: &DstNames,
    mtls: bool,
) -> TrafficLabels {
    let (svc_name, svc_ns) = match &names.service_name {
        Some((n, ns)) => (Some(n.as_str()), Some(ns.as_str())),
        None => (None, None),
    };
    TrafficLabels::new(reporter)
        .with_source(src)
        .with_destination(dst)
        .with_destination_service(names.service.as_deref(), svc_name, svc_ns)
        .with_security_policy(if mtls {
            SecurityPolicy::MutualTls
        } else {
            SecurityPolicy::None
        })
}
