//! Istio `security.istio.io/v1` PeerAuthentication: whether a workload accepts plaintext.
//!
//! Resolution for a workload (`ConfigSnapshot::mtls_mode`), as istiod computes it for ambient:
//! the first mesh-wide policy (root namespace, no selector), then the first namespace policy
//! (no selector), then the first selector policy of the workload's namespace that matches its
//! labels; each level that is not `UNSET` overrides the one before; default PERMISSIVE. "First"
//! is the order of the config (Istio uses the oldest object). Selector policies in the root
//! namespace are ignored, as in Istio. `portLevelMtls` of the selector policy overrides per port.
//! `DISABLE` is accepted and means PERMISSIVE: ztunnel always uses mTLS between mesh workloads
//! and the mode only decides whether plaintext is accepted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{FieldError, LabelLookup, WorkloadSelector, names};

/// Whether a workload accepts plaintext connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    /// mTLS and plaintext are both accepted (Istio's default).
    #[default]
    Permissive,
    /// Only mTLS (HBONE) is accepted; plaintext is refused.
    Strict,
}

/// A mode as written in a PeerAuthentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PeerAuthMode {
    /// Inherit from the enclosing level.
    #[default]
    Unset,
    /// Accept plaintext.
    Permissive,
    /// Refuse plaintext.
    Strict,
    /// Treated as PERMISSIVE (see the module docs).
    Disable,
}

impl PeerAuthMode {
    fn effective(self) -> Option<MtlsMode> {
        match self {
            Self::Unset => None,
            Self::Permissive | Self::Disable => Some(MtlsMode::Permissive),
            Self::Strict => Some(MtlsMode::Strict),
        }
    }
}

/// `mtls: {mode: ...}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MtlsSpec {
    /// The mode; absent = UNSET.
    #[serde(default)]
    pub mode: PeerAuthMode,
}

/// The `spec` of a PeerAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// Workloads it applies to; absent = the whole namespace (the mesh in the root namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Workload-level mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsSpec>,
    /// Per-port modes (requires a selector); keys are the workload's target ports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<u32, MtlsSpec>,
}

/// Why a PeerAuthentication was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    /// A field has an invalid value (the field path says which).
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A PeerAuthentication with its name and namespace next to the spec fields (the shape of the
/// local config file and of `/config_dump`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationResource {
    /// Policy name.
    pub name: String,
    /// Policy namespace (the root namespace makes it mesh-wide).
    pub namespace: String,
    /// See [`PeerAuthenticationSpec::selector`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// See [`PeerAuthenticationSpec::mtls`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsSpec>,
    /// See [`PeerAuthenticationSpec::port_level_mtls`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<u32, MtlsSpec>,
}

/// A validated PeerAuthentication. Serializes as a [`PeerAuthenticationResource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "PeerAuthenticationResource",
    into = "PeerAuthenticationResource"
)]
pub struct PeerAuthentication {
    /// Policy name.
    pub name: String,
    /// Policy namespace.
    pub namespace: String,
    /// Selector; `None` (absent or empty) = namespace-wide.
    pub selector: Option<WorkloadSelector>,
    /// Workload-level mode.
    pub mode: PeerAuthMode,
    /// Per-port modes (target ports of the workload).
    pub port_level_mtls: BTreeMap<u16, PeerAuthMode>,
}

impl TryFrom<PeerAuthenticationResource> for PeerAuthentication {
    type Error = PeerAuthError;
    fn try_from(r: PeerAuthenticationResource) -> Result<Self, PeerAuthError> {
        let spec = PeerAuthenticationSpec {
            selector: r.selector,
            mtls: r.mtls,
            port_level_mtls: r.port_level_mtls,
        };
        Self::from_spec(&r.name, &r.namespace, spec)
    }
}

impl From<PeerAuthentication> for PeerAuthenticationResource {
    fn from(p: PeerAuthentication) -> Self {
        Self {
            name: p.name,
            namespace: p.namespace,
            selector: p.selector,
            mtls: Some(MtlsSpec { mode: p.mode }),
            port_level_mtls: p
                .port_level_mtls
                .into_iter()
                .map(|(port, mode)| (u32::from(port), MtlsSpec { mode }))
                .collect(),
        }
    }
}

impl PeerAuthentication {
    /// Validates the spec of the policy `namespace/name`.
    pub fn from_spec(
        name: &str,
        namespace: &str,
        spec: PeerAuthenticationSpec,
    ) -> Result<Self, PeerAuthError> {
        names::dns_subdomain(name).map_err(|m| FieldError::new("name", m))?;
        names::dns_label(namespace).map_err(|m| FieldError::new("namespace", m))?;
        if let Some(sel) = &spec.selector {
            sel.validate().map_err(|e| e.under("selector"))?;
        }
        let selector = WorkloadSelector::non_empty(spec.selector);
        if selector.is_none() && !spec.port_level_mtls.is_empty() {
            return Err(
                FieldError::new("portLevelMtls", "requires a selector with matchLabels").into(),
            );
        }
        let mut port_level_mtls = BTreeMap::new();
        for (port, m) in spec.port_level_mtls {
            let p = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    FieldError::new(format!("portLevelMtls[{port}]"), "port must be 1 to 65535")
                })?;
            port_level_mtls.insert(p, m.mode);
        }
        Ok(Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            selector,
            mode: spec.mtls.unwrap_or_default().mode,
            port_level_mtls,
        })
    }
}

/// The effective mode for a workload in `namespace` with `labels`, on `port` if given, from
/// `policies` in config order (see the module docs).
pub fn effective_mode<'a>(
    policies: impl IntoIterator<Item = &'a PeerAuthentication>,
    root_namespace: &str,
    namespace: &str,
    labels: &(impl LabelLookup + ?Sized),
    port: Option<u16>,
) -> MtlsMode {
    let (mut mesh, mut ns, mut workload) = (None, None, None);
    for p in policies {
        match &p.selector {
            None if p.namespace == root_namespace => {
                mesh.get_or_insert(p);
            }
            None if p.namespace == namespace => {
                ns.get_or_insert(p);
            }
            Some(sel)
                if p.namespace == namespace
                    && p.namespace != root_namespace
                    && sel.matches(labels) =>
            {
                workload.get_or_insert(p);
            }
            _ => {}
        }
    }
    let mut mode = MtlsMode::Permissive;
    for level in [mesh, ns, workload].into_iter().flatten() {
        if let Some(m) = level.mode.effective() {
            mode = m;
        }
    }
    let port_mode = workload
        .zip(port)
        .and_then(|(w, p)| w.port_level_mtls.get(&p).copied());
    port_mode.and_then(PeerAuthMode::effective).unwrap_or(mode)
}

#[cfg(test)]
#[path = "peer_auth/tests.rs"]
mod tests;
