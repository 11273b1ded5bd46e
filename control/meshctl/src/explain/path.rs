//! The pure part of `meshctl explain`: from a config snapshot, where a connection from a pod to
//! `<host>:<port>` goes (the resolution ztunnel's outbound path makes) and what decides it at each
//! hop. Policy decisions come from `mesh_api::authz::evaluate` (L4, destination ztunnel) and
//! `mesh_api::l7::authz::evaluate` (waypoint): nothing of the policy logic is re-implemented.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use mesh_api::authz::{Action, ConnAttrs, Decision, Policy};
use mesh_api::l7::SimpleRequest;
use mesh_api::l7::authz::{HttpAttrs, applicable};
use mesh_api::{ConfigSnapshot, MtlsMode, PeerIdentity, Protocol, Service, Workload};

use super::ExplainError;
use super::report::{DestinationInfo, EndpointHop, PolicyEntry, WaypointHop};

/// Label of a waypoint pod naming its Gateway (set by control's deployer).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The configs explain works from: `main` (workloads and services are the same in every
/// ztunnel's), and per node the config of that node's ztunnel (policies are node-scoped).
#[derive(Debug)]
pub struct Configs<'a> {
    /// Config used for resolution, and for policies of nodes not in `by_node`.
    pub main: &'a ConfigSnapshot,
    /// Config of each node's ztunnel that was read.
    pub by_node: &'a HashMap<String, ConfigSnapshot>,
}

impl Configs<'_> {
    /// The config whose policies the ztunnel of `node` enforces.
    pub fn for_node(&self, node: &str) -> &ConfigSnapshot {
        self.by_node.get(node).unwrap_or(self.main)
    }
}

/// What `<host>` is.
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    /// A service, dialled at this VIP.
    Service(&'a Service, IpAddr),
    /// A workload, dialled at this address.
    Workload(&'a Workload, IpAddr),
    /// Nothing of the mesh: an address, or a name the mesh does not know.
    Outside(Option<IpAddr>),
}

/// Finds the source pod `namespace/name`.
pub fn source<'a>(
    cfg: &'a ConfigSnapshot,
    namespace: &str,
    name: &str,
) -> Result<&'a Workload, ExplainError> {
    cfg.workloads()
        .find(|w| w.namespace == namespace && w.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = cfg
                .workloads()
                .filter(|w| w.namespace == namespace)
                .map(|w| w.name.as_str())
                .collect();
            ExplainError::UnknownPod {
                pod: format!("{namespace}/{name}"),
                known: if known.is_empty() {
                    format!("no pods in namespace {namespace}")
                } else {
                    format!("pods in {namespace}: {}", known.join(", "))
                },
            }
        })
}

/// Resolves `host` as the client in namespace `ns` would: an IP (service VIP, workload address)
/// or a service name (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`).
pub fn destination<'a>(cfg: &'a ConfigSnapshot, ns: &str, host: &str) -> Dest<'a> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        if let Some(s) = cfg.service_by_vip(ip) {
            return Dest::Service(s, ip);
        }
        return match cfg.workload_by_ip(ip) {
            Some(w) => Dest::Workload(w, ip),
            None => Dest::Outside(Some(ip)),
        };
    }
    let host = host.trim_end_matches('.');
    let mut parts = host.splitn(3, '.');
    let (name, svc_ns) = (parts.next().unwrap_or(""), parts.next().unwrap_or(ns));
    let rest = parts.next();
    let in_cluster =
        rest.is_none_or(|r| r == "svc" || r == format!("svc.{}", mesh_api::model::CLUSTER_DOMAIN));
    let found = in_cluster
        .then(|| {
            cfg.services()
                .find(|s| s.name == name && s.namespace == svc_ns)
        })
        .flatten();
    match found.and_then(|s| s.vips.first().map(|v| (s, *v))) {
        Some((s, vip)) => Dest::Service(s, vip),
        None => Dest::Outside(None),
    }
}

/// The waypoint workload at `addr`, and the `namespace/name` of its Gateway.
pub fn waypoint_of(cfg: &ConfigSnapshot, addr: IpAddr) -> Option<(&Workload, (String, String))> {
    let w = cfg.workload_by_ip(addr)?;
    let gw = w
        .labels
        .get(GATEWAY_NAME_LABEL)
        .cloned()
        .or_else(|| {
            cfg.services_for_workload(&w.uid)
                .next()
                .map(|s| s.name.clone())
        })
        .unwrap_or_else(|| w.name.clone());
    Some((w, (w.namespace.clone(), gw)))
}

/// The describing part of the destination.
pub fn destination_info(dest: &Dest<'_>, host: &str, port: u16) -> DestinationInfo {
    let (kind, address, name, target_port) = match dest {
        Dest::Service(s, vip) => (
            "service",
            Some(vip.to_string()),
            Some(format!("{}/{}", s.namespace, s.name)),
            s.ports
                .iter()
                .find(|p| p.port == port)
                .map(|p| p.target_port),
        ),
        Dest::Workload(w, ip) => (
            "workload",
            Some(ip.to_string()),
            Some(format!("{}/{}", w.namespace, w.name)),
            None,
        ),
        Dest::Outside(ip) => ("outside-mesh", ip.map(|i| i.to_string()), None, None),
    };
    DestinationInfo {
        host: host.to_owned(),
        port,
        kind: kind.to_owned(),
        address,
        name,
        target_port,
    }
}

/// The peer a destination ztunnel sees: the client, or the waypoint that relays for it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// mTLS identity (`None`: plaintext).
    pub identity: Option<PeerIdentity>,
    /// Its address.
    pub ip: IpAddr,
    /// The waypoint workload, when the peer is one.
    pub waypoint_uid: Option<String>,
}

/// What the ztunnel of endpoint `w` decides for a connection from `peer` to `ip:port`, with the
/// policies it evaluates (`cfg` = that ztunnel's config).
pub fn endpoint_hop(
    cfg: &ConfigSnapshot,
    w: &Workload,
    ip: IpAddr,
    port: u16,
    peer: &Peer,
) -> EndpointHop {
    let mode = cfg.mtls_mode_for_port(w, port);
    let mut hop = EndpointHop {
        pod: format!("{}/{}", w.namespace, w.name),
        address: SocketAddr::new(ip, port).to_string(),
        node: if w.node.is_empty() {
            "-".to_owned()
        } else {
            w.node.clone()
        },
        connection: String::new(),
        mtls_mode: match mode {
            MtlsMode::Strict => "STRICT",
            MtlsMode::Permissive => "PERMISSIVE",
        }
        .to_owned(),
        policies: Vec::new(),
        verdict: "allow".to_owned(),
        reason: String::new(),
    };
    if w.protocol == Protocol::Tcp {
        hop.connection = "passthrough (destination not in the mesh)".to_owned();
        hop.reason = "plain TCP to a workload outside the mesh: no ztunnel checks it".to_owned();
        return hop;
    }
    hop.connection = match &peer.identity {
        Some(id) => format!("HBONE (mTLS as {})", id.principal()),
        None => "plaintext (captured on 15006)".to_owned(),
    };
    // Only HBONE is checked against the waypoint; plaintext inbound (15006) is not (ztunnel's
    // inbound_plain: STRICT, then policy).
    if let Some(wp) = w.waypoint.as_ref().filter(|_| peer.identity.is_some()) {
        let expected = cfg.workload_by_ip(wp.address).map(|x| x.uid.clone());
        if peer.waypoint_uid.is_none() || peer.waypoint_uid != expected {
            hop.verdict = "deny".to_owned();
            hop.reason = format!(
                "{} takes traffic only from its waypoint ({}); the peer is not it",
                w.name,
                crate::ztunnel_cmd::dump::waypoint_name(cfg, Some(wp))
            );
            return hop;
        }
    }
    if peer.identity.is_none() && mode == MtlsMode::Strict {
        hop.verdict = "deny".to_owned();
        hop.reason = "PeerAuthentication mode STRICT refuses plaintext".to_owned();
        return hop;
    }
    let conn = ConnAttrs {
        src_identity: peer.identity.clone(),
        src_ip: peer.ip,
        dst_ip: ip,
        dst_port: port,
    };
    let policies = cfg.policies_for(w);
    hop.policies = policy_entries(&policies, |p| mesh_api::authz::evaluate(p, &conn));
    let decision = mesh_api::authz::evaluate(&policies, &conn);
    (hop.verdict, hop.reason) = verdict(&decision, &hop.policies);
    hop
}

/// What waypoint `wp` (Gateway `gateway`) decides for a plain `GET /` from `src` to `dst`
/// (`svc` when bound to a service): its `targetRefs` policies from `cfg`.
pub fn waypoint_verdict(
    cfg: &ConfigSnapshot,
    gateway: (&str, &str),
    svc: Option<&Service>,
    src: &Peer,
    dst: SocketAddr,
) -> (Vec<PolicyEntry>, String, String) {
    let all = &cfg.parts().authorization_policies;
    let service = svc.map(|s| (s.namespace.as_str(), s.name.as_str()));
    let policies = applicable(all, cfg.root_namespace(), gateway, service);
    if policies.is_empty() {
        let known = all.iter().any(Policy::is_waypoint_policy);
        let reason = if known {
            "no targetRefs policy attaches to this waypoint or service".to_owned()
        } else {
            "no waypoint (targetRefs) policy in this config; a ztunnel's config never has them, give the full config with --config to check them".to_owned()
        };
        return (Vec::new(), "allow".to_owned(), reason);
    }
    let host = svc
        .map(|s| s.hostname.clone())
        .unwrap_or_else(|| dst.ip().to_string());
    let attrs = HttpAttrs {
        src_identity: src.identity.as_ref(),
        src_ip: src.ip,
        dst_ip: dst.ip(),
        dst_port: dst.port(),
        host: &host,
        request_principal: None,
        claims: None,
    };
    let req = SimpleRequest::new("GET", "/");
    let entries = policy_entries(&policies, |p| {
        mesh_api::l7::authz::evaluate(p, &attrs, &req)
    });
    let (v, r) = verdict(
        &mesh_api::l7::authz::evaluate(&policies, &attrs, &req),
        &entries,
    );
    (
        entries,
        v,
        format!("{r}; for GET / without a JWT, other requests may differ"),
    )
}

/// Each policy with whether it matches, found by evaluating it alone.
fn policy_entries(policies: &[&Policy], eval: impl Fn(&[&Policy]) -> Decision) -> Vec<PolicyEntry> {
    policies
        .iter()
        .map(|p| {
            let alone = eval(std::slice::from_ref(p));
            let matches = match p.action {
                Action::Deny => !alone.is_allowed(),
                Action::Allow => alone.is_allowed(),
            };
            PolicyEntry {
                name: p.key().to_string(),
                action: p.action.to_string(),
                matches,
            }
        })
        .collect()
}

/// `(verdict, reason)` of a decision, naming the ALLOW policy that let it through.
fn verdict(d: &Decision, entries: &[PolicyEntry]) -> (String, String) {
    match d {
        Decision::Allow => {
            let allowed_by = entries.iter().find(|e| e.action == "ALLOW" && e.matches);
            let reason = match allowed_by {
                Some(e) => format!("allowed by ALLOW policy {}", e.name),
                None => "no DENY policy matched and no ALLOW policy applies".to_owned(),
            };
            ("allow".to_owned(), reason)
        }
        Decision::Deny(r) => ("deny".to_owned(), r.to_string()),
    }
}

/// The waypoint hop for `dest` bound through `wp_addr`.
pub fn waypoint_hop(
    cfg: &ConfigSnapshot,
    wp: &mesh_api::WaypointRef,
    bound_to: &str,
    svc: Option<&Service>,
    src: &Peer,
    dst: SocketAddr,
) -> Result<(WaypointHop, Peer), String> {
    let Some((w, gw)) = waypoint_of(cfg, wp.address) else {
        return Err(format!(
            "waypoint {} is not a known workload: the source ztunnel refuses to send traffic to an unverifiable proxy",
            wp.address
        ));
    };
    let (policies, verdict, reason) = waypoint_verdict(cfg, (&gw.0, &gw.1), svc, src, dst);
    let hop = WaypointHop {
        name: format!("{}/{}", gw.0, gw.1),
        address: SocketAddr::new(wp.address, wp.port).to_string(),
        bound_to: bound_to.to_owned(),
        node: (!w.node.is_empty()).then(|| w.node.clone()),
        policies,
        verdict,
        reason,
    };
    let peer = Peer {
        identity: Some(w.identity()),
        ip: wp.address,
        waypoint_uid: Some(w.uid.clone()),
    };
    Ok((hop, peer))
}
