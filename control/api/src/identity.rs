//! The identity of a connection's peer, as ztunnel learns it from the peer's certificate.
//!
//! This is a plain-string view of a SPIFFE id (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`) so the
//! authorization code does not depend on the certificate crate (`mesh-identity`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// URI scheme prefix of SPIFFE ids.
const SPIFFE_SCHEME: &str = "spiffe://";

/// Why a SPIFFE URI could not be read as a workload identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The URI does not have the `spiffe://<td>/ns/<ns>/sa/<sa>` shape.
    #[error(
        "{uri:?} is not a workload identity: expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
    )]
    Malformed {
        /// The rejected URI.
        uri: String,
    },
}

/// A workload identity: trust domain, namespace and service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerIdentity {
    /// SPIFFE trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Kubernetes namespace of the workload.
    pub namespace: String,
    /// Kubernetes service account of the workload.
    pub service_account: String,
}

/// Name used by the first version of the API brief; same type as [`PeerIdentity`].
pub type SpiffeIdLike = PeerIdentity;

impl PeerIdentity {
    /// An identity from its three parts.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>` (the URI SAN of a workload certificate).
    pub fn from_spiffe_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed {
            uri: uri.to_string(),
        };
        let rest = uri.strip_prefix(SPIFFE_SCHEME).ok_or_else(malformed)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
                Ok(Self::new(*td, *ns, *sa))
            }
            _ => Err(malformed()),
        }
    }

    /// The Istio "principal" form used by AuthorizationPolicy: `<td>/ns/<ns>/sa/<sa>`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }

    /// The SPIFFE URI: `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_uri(&self) -> String {
        format!("{SPIFFE_SCHEME}{}", self.principal())
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SPIFFE_SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_uri_round_trip() {
        let id = PeerIdentity::from_spiffe_uri("spiffe://cluster.local/ns/default/sa/client")
            .expect("valid uri");
        assert_eq!(id, PeerIdentity::new("cluster.local", "default", "client"));
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/client");
        assert_eq!(
            id.spiffe_uri(),
            "spiffe://cluster.local/ns/default/sa/client"
        );
        assert_eq!(id.to_string(), id.spiffe_uri());
    }

    #[test]
    fn malformed_uris_are_rejected() {
        for uri in [
            "cluster.local/ns/default/sa/client",
            "spiffe://cluster.local/ns/default",
            "spiffe://cluster.local/ns//sa/client",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/sa/a/ns/b",
            "spiffe://td/ns/a/sa/b/extra",
        ] {
            assert!(
                PeerIdentity::from_spiffe_uri(uri).is_err(),
                "{uri} accepted"
            );
        }
    }
}
