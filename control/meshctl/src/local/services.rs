//! Services of local mode: stable cluster IPs (VIPs) from [`SERVICE_CIDR`] written into each
//! Service object's `spec.clusterIP` (so control and ztunnel get the VIP), and the endpoints of
//! each service port from its selector and the pods' readiness. The objects are the
//! Kubernetes-shaped JSON the local store keeps; [`ServiceView`] and [`PodView`] are the parts
//! this module, [`super::dns`] and [`super::kubeproxy`] need, parsed once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

pub mod hook;

/// The service CIDR: 10.255.0.0/16. Pod CIDRs are 10.N.0.0/24 with N <= 250 and the fabric is
/// 172.30.0.0/24, so it overlaps neither.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 255, 0, 0), 16);
/// `spec.clusterIP` of a headless service.
pub const HEADLESS: &str = "None";

/// Errors of service objects and VIP allocation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    /// The requested cluster IP is not an IPv4 address.
    #[error(
        "Service {service}: spec.clusterIP {value:?} is not an IPv4 address (leave it out to get one from {})",
        cidr()
    )]
    BadClusterIp {
        /// `<ns>/<name>`.
        service: String,
        /// The value.
        value: String,
    },
    /// The requested cluster IP is outside the service CIDR.
    #[error(
        "Service {service}: spec.clusterIP {ip} is outside the service CIDR {} (or its network/broadcast address)",
        cidr()
    )]
    OutOfRange {
        /// `<ns>/<name>`.
        service: String,
        /// The address.
        ip: Ipv4Addr,
    },
    /// The requested cluster IP belongs to another service.
    #[error(
        "Service {service}: spec.clusterIP {ip} is already allocated to Service {owner}; pick another or leave it out"
    )]
    Taken {
        /// `<ns>/<name>`.
        service: String,
        /// The address.
        ip: Ipv4Addr,
        /// The service holding it.
        owner: String,
    },
    /// Every address of the CIDR is in use.
    #[error("Service {0}: no free cluster IP left in {cidr}", cidr = cidr())]
    Exhausted(String),
    /// A port of the service is invalid.
    #[error("Service {service}: {detail}")]
    BadPort {
        /// `<ns>/<name>`.
        service: String,
        /// What is wrong.
        detail: String,
    },
}

fn cidr() -> String {
    format!("{}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1)
}

/// `(namespace, name)` of an object (`default` namespace when absent).
pub fn ns_name(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("default").to_owned();
    (ns, meta["name"].as_str().unwrap_or_default().to_owned())
}

fn is_kind(obj: &Value, kind: &str) -> bool {
    obj["kind"].as_str() == Some(kind)
}

/// A service port's target: a number or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A named container port.
    Name(String),
}

/// Transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The nft keyword.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    /// The port's name (may be empty).
    pub name: String,
    /// The service port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Where it goes on the endpoint pods.
    pub target: TargetPort,
}

/// The parts of a Service that local mode's networking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The VIP; `None` for a headless service (or one not allocated yet).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The ports (SCTP ports are left out).
    pub ports: Vec<PortView>,
    /// The selector (empty: no endpoints from pods).
    pub selector: BTreeMap<String, String>,
}

impl ServiceView {
    /// Parses a Service object; `None` when it is not a Service.
    pub fn from_object(obj: &Value) -> Result<Option<Self>, ServiceError> {
        if !is_kind(obj, "Service") {
            return Ok(None);
        }
        let (namespace, name) = ns_name(obj);
        let service = format!("{namespace}/{name}");
        let spec = &obj["spec"];
        let cluster_ip = match spec["clusterIP"].as_str() {
            None | Some("" | HEADLESS) => None,
            Some(s) => Some(s.parse().map_err(|_| ServiceError::BadClusterIp {
                service: service.clone(),
                value: s.to_owned(),
            })?),
        };
        let mut ports = Vec::new();
        for p in spec["ports"].as_array().into_iter().flatten() {
            let bad = |detail: String| ServiceError::BadPort {
                service: service.clone(),
                detail,
            };
            let port = p["port"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
                .ok_or_else(|| bad(format!("port {} is not a port number", p["port"])))?;
            let protocol = match p["protocol"].as_str().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => continue,
            };
            let target = match &p["targetPort"] {
                Value::Null => TargetPort::Number(port),
                Value::String(s) => match s.parse::<u16>() {
                    Ok(n) if n != 0 => TargetPort::Number(n),
                    _ => TargetPort::Name(s.clone()),
                },
                v => TargetPort::Number(
                    v.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|n| *n != 0)
                        .ok_or_else(|| bad(format!("port {port}: targetPort {v} is invalid")))?,
                ),
            };
            ports.push(PortView {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                port,
                protocol,
                target,
            });
        }
        let selector = spec["selector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Self {
            namespace,
            name,
            cluster_ip,
            ports,
            selector,
        }))
    }

    /// Whether the service is headless (`clusterIP: None`).
    pub fn headless(obj: &Value) -> bool {
        obj["spec"]["clusterIP"].as_str() == Some(HEADLESS)
    }
}

/// Gives every Service in `incoming` a cluster IP and writes it into `spec.clusterIP` and
/// `spec.clusterIPs`: a service already in `existing` (the store before this apply) keeps its
/// address; a user-set address is honoured when it is free; else the lowest free address of
/// [`SERVICE_CIDR`]. Headless services stay headless. On error nothing is changed.
pub fn assign_cluster_ips(existing: &[Value], incoming: &mut [Value]) -> Result<(), ServiceError> {
    let incoming_keys: BTreeSet<(String, String)> = incoming
        .iter()
        .filter(|o| is_kind(o, "Service"))
        .map(ns_name)
        .collect();
    // Addresses held by services this apply does not touch, and the previous address of those it does.
    let mut used: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut previous: BTreeMap<(String, String), Ipv4Addr> = BTreeMap::new();
    for obj in existing.iter().filter(|o| is_kind(o, "Service")) {
        let key = ns_name(obj);
        let Some(ip) = obj["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if incoming_keys.contains(&key) {
            previous.insert(key, ip);
        } else {
            used.insert(ip, format!("{}/{}", key.0, key.1));
        }
    }
    let mut chosen = Vec::new();
    // Explicit addresses first, so that an automatic one never takes an address asked for later.
    let mut order: Vec<usize> = (0..incoming.len())
        .filter(|&i| is_kind(&incoming[i], "Service") && !ServiceView::headless(&incoming[i]))
        .collect();
    // Then re-applied services (keeping theirs), then new ones.
    order.sort_by_key(|&i| match requested(&incoming[i]) {
        Some(_) => 0,
        None if previous.contains_key(&ns_name(&incoming[i])) => 1,
        None => 2,
    });
    let reserved: BTreeSet<Ipv4Addr> = previous.values().copied().collect();
    for i in order {
        let key = ns_name(&incoming[i]);
        let service = format!("{}/{}", key.0, key.1);
        let ip = match requested(&incoming[i]) {
            Some(s) => {
                let ip: Ipv4Addr = s.parse().map_err(|_| ServiceError::BadClusterIp {
                    service: service.clone(),
                    value: s.to_owned(),
                })?;
                if !in_cidr(ip) {
                    return Err(ServiceError::OutOfRange { service, ip });
                }
                if let Some(owner) = used.get(&ip) {
                    return Err(ServiceError::Taken {
                        service,
                        ip,
                        owner: owner.clone(),
                    });
                }
                ip
            }
            None => match previous.get(&key) {
                Some(ip) if !used.contains_key(ip) => *ip,
                _ => lowest_free(|ip| used.contains_key(&ip) || reserved.contains(&ip))
                    .ok_or(ServiceError::Exhausted(service.clone()))?,
            },
        };
        used.insert(ip, service);
        chosen.push((i, ip));
    }
    for (i, ip) in chosen {
        if let Some(spec) = incoming[i].get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("clusterIP".into(), Value::String(ip.to_string()));
            spec.insert("clusterIPs".into(), Value::from(vec![ip.to_string()]));
        } else if let Some(obj) = incoming[i].as_object_mut() {
            obj.insert(
                "spec".into(),
                serde_json::json!({"clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()]}),
            );
        }
    }
    Ok(())
}

/// Admission of one object being applied (`apply::admit`): a Service gets its cluster IP
/// ([`assign_cluster_ips`] against the stored services); a Pod's or Deployment template's
/// readiness probes must be usable. The error is the message for the user.
pub fn admit(obj: &mut Value, objects: &crate::local::store::Objects) -> Result<(), String> {
    match obj["kind"].as_str() {
        Some("Service") => {
            let existing: Vec<Value> = objects.of_kind("Service", None).cloned().collect();
            assign_cluster_ips(&existing, std::slice::from_mut(obj)).map_err(|e| e.to_string())
        }
        Some(kind @ ("Pod" | "Deployment")) => {
            let pod = if kind == "Pod" {
                &*obj
            } else {
                &obj["spec"]["template"]
            };
            let (ns, name) = ns_name(obj);
            crate::local::probe::readiness_probes(pod)
                .map(|_| ())
                .map_err(|e| format!("{kind} {ns}/{name}: {e}"))
        }
        _ => Ok(()),
    }
}

fn requested(obj: &Value) -> Option<&str> {
    obj["spec"]["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty() && *s != HEADLESS)
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (net, len) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - len);
    let (ip, net) = (u32::from(ip), u32::from(net));
    ip & mask == net && ip != net && ip != net | !mask
}

fn lowest_free(taken: impl Fn(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let (net, len) = SERVICE_CIDR;
    let first = u32::from(net) + 1;
    let last = (u32::from(net) | (u32::MAX >> len)) - 1;
    (first..=last).map(Ipv4Addr::from).find(|ip| !taken(*ip))
}

/// The parts of a Pod that services, probes and DNS need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `status.podIP`.
    pub ip: Option<Ipv4Addr>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it takes traffic (see [`pod_ready`]).
    pub ready: bool,
    /// Named container ports.
    pub named_ports: BTreeMap<String, u16>,
}

impl PodView {
    /// Parses a Pod object; `None` when it is not a Pod.
    pub fn from_object(obj: &Value) -> Option<Self> {
        if !is_kind(obj, "Pod") {
            return None;
        }
        let (namespace, name) = ns_name(obj);
        let labels = obj["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let named_ports = obj["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| {
                let port = u16::try_from(p["containerPort"].as_u64()?).ok()?;
                Some((p["name"].as_str()?.to_owned(), port))
            })
            .collect();
        Some(Self {
            namespace,
            name,
            ip: obj["status"]["podIP"].as_str().and_then(|s| s.parse().ok()),
            labels,
            ready: pod_ready(obj),
            named_ports,
        })
    }
}

/// Whether a pod object takes traffic, read as control reads it (`control/src/translate`): its
/// `Ready` condition, or with no conditions at all, having an address; never while terminating
/// or after it ended.
pub fn pod_ready(obj: &Value) -> bool {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return false;
    }
    let status = &obj["status"];
    if matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return false;
    }
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) => c["status"] == "True",
        None => status["podIP"].as_str().is_some_and(|s| !s.is_empty()),
    }
}

/// The ready endpoints of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEndpoints {
    /// The service port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Ready endpoints (pod IP and target port), sorted.
    pub endpoints: Vec<SocketAddrV4>,
}

/// The ready endpoints of every port of `svc` among `pods`: pods of its namespace matching its
/// (non-empty) selector, ready, with an address; a named target port resolved on each pod (pods
/// without that port name are left out of that port).
pub fn endpoints(svc: &ServiceView, pods: &[PodView]) -> Vec<PortEndpoints> {
    let selected: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.namespace == svc.namespace && p.ready && p.ip.is_some())
        .filter(|p| {
            !svc.selector.is_empty() && svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
        })
        .collect();
    svc.ports
        .iter()
        .map(|port| {
            let mut endpoints: Vec<SocketAddrV4> = selected
                .iter()
                .filter_map(|p| {
                    let target = match &port.target {
                        TargetPort::Number(n) => *n,
                        TargetPort::Name(name) => *p.named_ports.get(name)?,
                    };
                    Some(SocketAddrV4::new(p.ip?, target))
                })
                .collect();
            endpoints.sort();
            PortEndpoints {
                port: port.port,
                protocol: port.protocol,
                endpoints,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
