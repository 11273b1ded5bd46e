//! The immutable, validated, indexed config a proxy works from.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::{DEFAULT_ROOT_NAMESPACE, FieldError, MtlsMode, Service, Workload, names};
use crate::authz::Policy;
use crate::peer_auth::{self, PeerAuthentication};

/// Why a set of config parts cannot become a snapshot. Nothing of a rejected config is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A field is invalid (its path says which, e.g. `workloads[2].addresses[0]`).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// Two entries claim the same key (uid, address, VIP or policy name).
    #[error("{field}: {what} is already used by {first}; each must be unique")]
    Duplicate {
        /// Path of the second entry.
        field: String,
        /// The duplicated value.
        what: String,
        /// Path of the first entry.
        first: String,
    },
    /// A service names an endpoint uid that no workload has.
    #[error("{field}: no workload has uid {uid:?}; list uids of workloads in this config")]
    UnknownEndpoint {
        /// Path of the endpoint entry.
        field: String,
        /// The unknown uid.
        uid: String,
    },
}

/// Everything a snapshot is made of, unindexed: what control builds and what `/config_dump`
/// prints (camelCase JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotParts {
    /// Namespace whose policies apply mesh-wide; empty means `istio-system`.
    #[serde(default)]
    pub root_namespace: String,
    /// Workloads (pods).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Authorization policies.
    #[serde(default)]
    pub authorization_policies: Vec<Policy>,
    /// Peer authentications.
    #[serde(default)]
    pub peer_authentications: Vec<PeerAuthentication>,
}

impl SnapshotParts {
    /// Releases spare capacity of every list and workload (parts built by pushing, or decoded, keep up to
    /// twice what they need; a ztunnel holds the workloads of the whole cluster).
    pub fn shrink_to_fit(&mut self) {
        self.workloads.shrink_to_fit();
        for w in &mut self.workloads {
            w.addresses.shrink_to_fit();
            w.labels.shrink_to_fit();
        }
        self.services.shrink_to_fit();
        for s in &mut self.services {
            s.vips.shrink_to_fit();
            s.ports.shrink_to_fit();
            s.endpoints.shrink_to_fit();
        }
        self.authorization_policies.shrink_to_fit();
        self.peer_authentications.shrink_to_fit();
    }
}

/// Validated config with the indexes ztunnel needs per connection. Immutable: updates build a
/// new snapshot (share it behind an `Arc` and swap it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SnapshotParts")]
pub struct ConfigSnapshot {
    parts: SnapshotParts,
    by_ip: HashMap<IpAddr, usize>,
    by_uid: HashMap<String, usize>,
    by_vip: HashMap<IpAddr, usize>,
    /// For each workload (by index), the services (by index) that list it as an endpoint.
    services_of: Vec<Vec<usize>>,
    /// Indexes of policies in the root namespace.
    root_policies: Vec<usize>,
    /// Indexes of policies by (non-root) namespace.
    ns_policies: HashMap<String, Vec<usize>>,
}

impl Default for ConfigSnapshot {
    fn default() -> Self {
        Self::new(SnapshotParts::default()).expect("an empty config is always valid")
    }
}

impl TryFrom<SnapshotParts> for ConfigSnapshot {
    type Error = SnapshotError;
    fn try_from(parts: SnapshotParts) -> Result<Self, SnapshotError> {
        Self::new(parts)
    }
}

impl Serialize for ConfigSnapshot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &self.parts;
        let mut st = s.serialize_struct("ConfigSnapshot", 5)?;
        st.serialize_field("rootNamespace", &p.root_namespace)?;
        st.serialize_field("workloads", &p.workloads)?;
        st.serialize_field("services", &p.services)?;
        st.serialize_field("authorizationPolicies", &p.authorization_policies)?;
        st.serialize_field("peerAuthentications", &p.peer_authentications)?;
        st.end()
    }
}

/// Inserts `key` -> `value`, or reports the path of the entry that already has it.
fn unique<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, usize>,
    key: K,
    value: usize,
    what: impl Fn() -> String,
    field: impl Fn(usize) -> String,
) -> Result<(), SnapshotError> {
    if let Some(first) = map.get(&key) {
        return Err(SnapshotError::Duplicate {
            field: field(value),
            what: what(),
            first: field(*first),
        });
    }
    map.insert(key, value);
    Ok(())
}

impl ConfigSnapshot {
    /// Validates and indexes `parts`: all of it, or an error and nothing.
    pub fn new(mut parts: SnapshotParts) -> Result<Self, SnapshotError> {
        if parts.root_namespace.is_empty() {
            parts.root_namespace = DEFAULT_ROOT_NAMESPACE.to_string();
        }
        names::dns_label(&parts.root_namespace).map_err(|m| FieldError::new("rootNamespace", m))?;
        parts.shrink_to_fit();
        let (mut by_ip, mut by_uid) = (HashMap::new(), HashMap::new());
        for (i, w) in parts.workloads.iter().enumerate() {
            let path = |i: usize| format!("workloads[{i}]");
            w.validate().map_err(|e| e.under(&path(i)))?;
            unique(
                &mut by_uid,
                w.uid.clone(),
                i,
                || format!("uid {:?}", w.uid),
                path,
            )?;
            for (j, ip) in w.addresses.iter().enumerate() {
                unique(&mut by_ip, *ip, i, || format!("address {ip}"), path)
                    .map_err(|e| locate_address(e, i, j))?;
            }
        }
        let mut by_vip = HashMap::new();
        let mut services_of = vec![Vec::new(); parts.workloads.len()];
        let mut hostnames = HashMap::new();
        for (i, s) in parts.services.iter().enumerate() {
            let path = |i: usize| format!("services[{i}]");
            s.validate().map_err(|e| e.under(&path(i)))?;
            unique(
                &mut hostnames,
                s.hostname.clone(),
                i,
                || format!("service {}", s.hostname),
                path,
            )?;
            for (j, vip) in s.vips.iter().enumerate() {
                if let Some(w) = by_ip.get(vip) {
                    return Err(SnapshotError::Duplicate {
                        field: format!("services[{i}].vips[{j}]"),
                        what: format!("address {vip}"),
                        first: format!("workloads[{w}]"),
                    });
                }
                unique(&mut by_vip, *vip, i, || format!("VIP {vip}"), path)?;
            }
            for (j, uid) in s.endpoints.iter().enumerate() {
                let field = format!("services[{i}].endpoints[{j}]");
                let w = *by_uid
                    .get(uid)
                    .ok_or_else(|| SnapshotError::UnknownEndpoint {
                        field: field.clone(),
                        uid: uid.clone(),
                    })?;
                if services_of[w].contains(&i) {
                    return Err(
                        FieldError::new(field, format!("uid {uid:?} is listed twice")).into(),
                    );
                }
                services_of[w].push(i);
            }
        }
        let (root_policies, ns_policies) = index_policies(&parts)?;
        let mut names = HashMap::new();
        for (i, p) in parts.peer_authentications.iter().enumerate() {
            let key = (p.namespace.clone(), p.name.clone());
            let what = || format!("PeerAuthentication {}/{}", p.namespace, p.name);
            unique(&mut names, key, i, what, |i| {
                format!("peerAuthentications[{i}]")
            })?;
        }
        Ok(Self {
            parts,
            by_ip,
            by_uid,
            by_vip,
            services_of,
            root_policies,
            ns_policies,
        })
    }

    /// The parts the snapshot was built from (with the root namespace filled in).
    pub fn parts(&self) -> &SnapshotParts {
        &self.parts
    }

    /// The parts, to build an updated snapshot from.
    pub fn into_parts(self) -> SnapshotParts {
        self.parts
    }

    /// Namespace whose policies apply mesh-wide.
    pub fn root_namespace(&self) -> &str {
        &self.parts.root_namespace
    }

    /// The workload with address `ip` (IPv4-mapped IPv6 addresses are looked up as IPv4).
    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Workload> {
        self.by_ip
            .get(&ip.to_canonical())
            .map(|i| &self.parts.workloads[*i])
    }

    /// The workload with this uid.
    pub fn workload(&self, uid: &str) -> Option<&Workload> {
        self.by_uid.get(uid).map(|i| &self.parts.workloads[*i])
    }

    /// The service with cluster IP `vip`.
    pub fn service_by_vip(&self, vip: IpAddr) -> Option<&Service> {
        self.by_vip
            .get(&vip.to_canonical())
            .map(|i| &self.parts.services[*i])
    }

    /// The workloads behind `svc`, in its endpoint order (uids unknown here are skipped).
    pub fn service_endpoints<'a>(
        &'a self,
        svc: &'a Service,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        svc.endpoints.iter().filter_map(|uid| self.workload(uid))
    }

    /// The services that list the workload `uid` as an endpoint.
    pub fn services_for_workload<'a>(
        &'a self,
        uid: &str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        let idx = self
            .by_uid
            .get(uid)
            .map(|i| self.services_of[*i].as_slice())
            .unwrap_or_default();
        idx.iter().map(|i| &self.parts.services[*i])
    }

    /// All workloads, in config order.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.parts.workloads.iter()
    }

    /// All services, in config order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.parts.services.iter()
    }

    /// All authorization policies (including waypoint ones), in config order.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.parts.authorization_policies.iter()
    }

    /// All peer authentications, in config order.
    pub fn peer_authentications(&self) -> impl Iterator<Item = &PeerAuthentication> {
        self.parts.peer_authentications.iter()
    }

    /// The policies ztunnel enforces for `w`: mesh-wide ones (root namespace, no selector),
    /// root-namespace selector ones matching its labels, its namespace's ones without selector,
    /// and its namespace's selector ones matching its labels. Waypoint (`targetRefs`) policies
    /// are never included. Config order within root, then namespace, policies.
    pub fn policies_for(&self, w: &Workload) -> Vec<&Policy> {
        let ns = (w.namespace != self.parts.root_namespace)
            .then(|| self.ns_policies.get(&w.namespace))
            .flatten();
        self.root_policies
            .iter()
            .chain(ns.into_iter().flatten())
            .map(|i| &self.parts.authorization_policies[*i])
            .filter(|p| !p.is_waypoint_policy())
            .filter(|p| p.selector.as_ref().is_none_or(|s| s.matches(&w.labels)))
            .collect()
    }

    /// Whether `w` accepts plaintext (see [`crate::peer_auth`] for the precedence rules).
    pub fn mtls_mode(&self, w: &Workload) -> MtlsMode {
        self.mode(w, None)
    }

    /// Like [`Self::mtls_mode`], with the `portLevelMtls` of `w`'s selector policy for `port`.
    pub fn mtls_mode_for_port(&self, w: &Workload, port: u16) -> MtlsMode {
        self.mode(w, Some(port))
    }

    fn mode(&self, w: &Workload, port: Option<u16>) -> MtlsMode {
        let root = &self.parts.root_namespace;
        peer_auth::effective_mode(
            &self.parts.peer_authentications,
            root,
            &w.namespace,
            &w.labels,
            port,
        )
    }
}

fn locate_address(e: SnapshotError, workload: usize, address: usize) -> SnapshotError {
    match e {
        SnapshotError::Duplicate { what, first, .. } => SnapshotError::Duplicate {
            field: format!("workloads[{workload}].addresses[{address}]"),
            what,
            first,
        },
        other => other,
    }
}

type PolicyIndex = (Vec<usize>, HashMap<String, Vec<usize>>);

fn index_policies(parts: &SnapshotParts) -> Result<PolicyIndex, SnapshotError> {
    let (mut root, mut by_ns) = (Vec::new(), HashMap::<String, Vec<usize>>::new());
    let mut names = HashMap::new();
    for (i, p) in parts.authorization_policies.iter().enumerate() {
        let key = (p.namespace.clone(), p.name.clone());
        let what = || format!("AuthorizationPolicy {}/{}", p.namespace, p.name);
        unique(&mut names, key, i, what, |i| {
            format!("authorizationPolicies[{i}]")
        })?;
        if p.namespace == parts.root_namespace {
            root.push(i);
        } else {
            by_ns.entry(p.namespace.clone()).or_default().push(i);
        }
    }
    Ok((root, by_ns))
}

#[cfg(test)]
#[path = "snapshot/tests.rs"]
mod tests;
