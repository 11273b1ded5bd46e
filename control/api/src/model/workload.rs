//! Workloads (pods) as the proxies see them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_TRUST_DOMAIN, DEFAULT_WAYPOINT_PORT, FieldError, Labels, names};
use crate::identity::PeerIdentity;

/// Labels, in Istio's order of preference, that name a workload's canonical service.
const CANONICAL_NAME_LABELS: [&str; 3] = [
    "service.istio.io/canonical-name",
    "app.kubernetes.io/name",
    "app",
];
/// Labels, in Istio's order of preference, that name a workload's canonical revision.
const CANONICAL_REVISION_LABELS: [&str; 3] = [
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/version",
    "version",
];
/// Canonical revision of workloads without a revision label (Istio's default).
const DEFAULT_CANONICAL_REVISION: &str = "latest";

/// How a workload takes inbound traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// Enrolled in the mesh: a ztunnel serves it, send HBONE to its port 15008.
    #[default]
    Hbone,
    /// Not in the mesh: plain TCP.
    Tcp,
}

/// Where a waypoint accepts HBONE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaypointRef {
    /// Address of the waypoint (its pod or service address).
    pub address: IpAddr,
    /// HBONE port of the waypoint.
    #[serde(default = "default_waypoint_port")]
    pub port: u16,
}

fn default_waypoint_port() -> u16 {
    DEFAULT_WAYPOINT_PORT
}

fn default_trust_domain() -> String {
    DEFAULT_TRUST_DOMAIN.to_string()
}

impl WaypointRef {
    /// A waypoint on `address`, port 15008.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            port: DEFAULT_WAYPOINT_PORT,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FieldError> {
        validate_unicast(self.address).map_err(|m| FieldError::new("address", m))?;
        if self.port == 0 {
            return Err(FieldError::new(
                "port",
                "port 0 is not a valid waypoint port",
            ));
        }
        Ok(())
    }
}

/// A workload (pod): its addresses, identity and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Unique id (the pod UID in Kubernetes; `<namespace>/<name>` in the local file by default).
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Service account the pod runs as; with the namespace and trust domain, its identity.
    pub service_account: String,
    /// Node the pod runs on.
    #[serde(default)]
    pub node: String,
    /// Pod IPs. Empty while the pod has none (it is then unreachable).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Pod labels (selectors of services and policies match them); a compact sorted map.
    #[serde(default)]
    pub labels: Labels,
    /// Whether the pod is enrolled in the mesh.
    #[serde(default)]
    pub protocol: Protocol,
    /// The waypoint traffic to this workload goes through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointRef>,
    /// SPIFFE trust domain of the workload's identity.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            uid: String::new(),
            name: String::new(),
            namespace: String::new(),
            service_account: String::new(),
            node: String::new(),
            addresses: Vec::new(),
            labels: Labels::new(),
            protocol: Protocol::Hbone,
            waypoint: None,
            trust_domain: default_trust_domain(),
        }
    }
}

impl Workload {
    /// The workload's identity (trust domain, namespace, service account).
    pub fn identity(&self) -> PeerIdentity {
        PeerIdentity::new(&self.trust_domain, &self.namespace, &self.service_account)
    }

    /// Whether `ip` is one of the workload's addresses.
    pub fn has_address(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.addresses.contains(&ip)
    }

    /// Istio's canonical service name (labels `service.istio.io/canonical-name`,
    /// `app.kubernetes.io/name`, `app`, else the pod name), for metrics.
    pub fn canonical_name(&self) -> &str {
        first_label(&self.labels, &CANONICAL_NAME_LABELS).unwrap_or(&self.name)
    }

    /// Istio's canonical revision (labels `service.istio.io/canonical-revision`,
    /// `app.kubernetes.io/version`, `version`, else `latest`), for metrics.
    pub fn canonical_revision(&self) -> &str {
        first_label(&self.labels, &CANONICAL_REVISION_LABELS).unwrap_or(DEFAULT_CANONICAL_REVISION)
    }

    /// Checks every field; errors are located relative to the workload.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.uid.is_empty() {
            return Err(FieldError::new("uid", "must not be empty"));
        }
        names::dns_subdomain(&self.name).map_err(|m| FieldError::new("name", m))?;
        names::dns_label(&self.namespace).map_err(|m| FieldError::new("namespace", m))?;
        names::dns_subdomain(&self.service_account)
            .map_err(|m| FieldError::new("serviceAccount", m))?;
        names::trust_domain(&self.trust_domain).map_err(|m| FieldError::new("trustDomain", m))?;
        for (i, ip) in self.addresses.iter().enumerate() {
            validate_unicast(*ip).map_err(|m| FieldError::new(format!("addresses[{i}]"), m))?;
            if self.addresses[..i].contains(ip) {
                return Err(FieldError::new(
                    format!("addresses[{i}]"),
                    format!("{ip} is listed twice"),
                ));
            }
        }
        names::validate_labels(&self.labels).map_err(|e| e.under("labels"))?;
        if let Some(wp) = &self.waypoint {
            wp.validate().map_err(|e| e.under("waypoint"))?;
        }
        Ok(())
    }
}

fn first_label<'a>(labels: &'a Labels, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| labels.get(*k))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Rejects addresses no pod or waypoint can have, and IPv4-mapped IPv6 forms (write the IPv4).
pub(crate) fn validate_unicast(ip: IpAddr) -> Result<(), String> {
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} is not a unicast address"));
    }
    if ip.to_canonical() != ip {
        return Err(format!(
            "{ip} is an IPv4-mapped address: write it as {}",
            ip.to_canonical()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            uid: "default/a".into(),
            name: "a".into(),
            namespace: "default".into(),
            service_account: "sa".into(),
            addresses: vec!["10.0.0.1".parse().expect("ip")],
            ..Default::default()
        }
    }

    #[test]
    fn valid_workload_and_identity() {
        let w = workload();
        assert_eq!(w.validate(), Ok(()));
        assert_eq!(w.identity().principal(), "cluster.local/ns/default/sa/sa");
        assert!(w.has_address("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(!w.has_address("10.0.0.2".parse().expect("ip")));
    }

    #[test]
    fn invalid_fields_are_located() {
        type Case = (fn(&mut Workload), &'static str);
        let cases: Vec<Case> = vec![
            (|w| w.uid.clear(), "uid"),
            (|w| w.name = "A".into(), "name"),
            (|w| w.namespace = "a.b".into(), "namespace"),
            (|w| w.service_account = "x y".into(), "serviceAccount"),
            (|w| w.trust_domain = "TD".into(), "trustDomain"),
            (
                |w| w.addresses.push("0.0.0.0".parse().expect("ip")),
                "addresses[1]",
            ),
            (
                |w| w.addresses.push("10.0.0.1".parse().expect("ip")),
                "addresses[1]",
            ),
            (
                |w| w.addresses.push("::ffff:10.0.0.9".parse().expect("ip")),
                "addresses[1]",
            ),
            (
                |w| _ = w.labels.insert("-bad".into(), "v".into()),
                "labels.-bad",
            ),
            (
                |w| {
                    w.waypoint = Some(WaypointRef {
                        address: "10.0.0.9".parse().expect("ip"),
                        port: 0,
                    })
                },
                "waypoint.port",
            ),
        ];
        for (mutate, field) in cases {
            let mut w = workload();
            mutate(&mut w);
            let err = w.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn canonical_names_follow_istio_label_order() {
        let mut w = workload();
        assert_eq!(
            (w.canonical_name(), w.canonical_revision()),
            ("a", "latest")
        );
        w.labels.insert("app".into(), "echo".into());
        w.labels.insert("version".into(), "v2".into());
        assert_eq!((w.canonical_name(), w.canonical_revision()), ("echo", "v2"));
        w.labels
            .insert("service.istio.io/canonical-name".into(), "echo-svc".into());
        assert_eq!(w.canonical_name(), "echo-svc");
    }
}
