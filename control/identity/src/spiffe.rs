//! SPIFFE workload identities of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The trust domain used when none is configured (Kubernetes' and Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The URI scheme prefix of every SPIFFE id.
const SCHEME: &str = "spiffe://";

/// The SPIFFE specification caps ids at 2048 bytes.
const MAX_LEN: usize = 2048;

/// A workload identity: a Kubernetes service account in a namespace of a trust domain.
///
/// `Display` gives `spiffe://<td>/ns/<ns>/sa/<sa>`; `FromStr` parses exactly that form and validates
/// every part against the SPIFFE specification.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    /// The trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// The Kubernetes namespace of the workload.
    pub namespace: String,
    /// The Kubernetes service account of the workload.
    pub service_account: String,
}

impl SpiffeId {
    /// An id from its parts, without validation (see [`SpiffeId::try_new`] and [`SpiffeId::validate`]).
    pub fn new(td: impl Into<String>, ns: impl Into<String>, sa: impl Into<String>) -> Self {
        Self {
            trust_domain: td.into(),
            namespace: ns.into(),
            service_account: sa.into(),
        }
    }

    /// An id from its parts, validated as [`FromStr`] would.
    pub fn try_new(
        td: impl Into<String>,
        ns: impl Into<String>,
        sa: impl Into<String>,
    ) -> Result<Self, Error> {
        let id = Self::new(td, ns, sa);
        id.validate()?;
        Ok(id)
    }

    /// Checks that every part is allowed by the SPIFFE specification, so that `Display` and `FromStr`
    /// round-trip.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &'static str| Error::InvalidSpiffeId {
            input: self.to_string(),
            reason,
        };
        check_trust_domain(&self.trust_domain).map_err(invalid)?;
        check_segment(&self.namespace, &NAMESPACE).map_err(invalid)?;
        check_segment(&self.service_account, &SERVICE_ACCOUNT).map_err(invalid)?;
        if self.to_string().len() > MAX_LEN {
            return Err(invalid("longer than 2048 bytes"));
        }
        Ok(())
    }

    /// True if this identity belongs to `trust_domain`.
    pub fn in_trust_domain(&self, trust_domain: &str) -> bool {
        self.trust_domain == trust_domain
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &'static str| Error::InvalidSpiffeId {
            input: s.to_string(),
            reason,
        };
        if s.len() > MAX_LEN {
            return Err(invalid("longer than 2048 bytes"));
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| invalid("must start with spiffe://"))?;
        let (td, path) = rest
            .split_once('/')
            .ok_or_else(|| invalid("must have the path /ns/<namespace>/sa/<service-account>"))?;
        let parts: Vec<&str> = path.split('/').collect();
        let [ns_key, ns, sa_key, sa] = parts.as_slice() else {
            return Err(invalid(
                "path must be exactly /ns/<namespace>/sa/<service-account>",
            ));
        };
        if *ns_key != "ns" || *sa_key != "sa" {
            return Err(invalid(
                "path must be exactly /ns/<namespace>/sa/<service-account>",
            ));
        }
        check_trust_domain(td).map_err(invalid)?;
        check_segment(ns, &NAMESPACE).map_err(invalid)?;
        check_segment(sa, &SERVICE_ACCOUNT).map_err(invalid)?;
        Ok(Self::new(td, *ns, *sa))
    }
}

/// SPIFFE trust domains: lowercase letters, digits, `.`, `-` and `_`, not empty.
pub(crate) fn check_trust_domain(td: &str) -> Result<(), &'static str> {
    if td.is_empty() {
        return Err("trust domain is empty");
    }
    let ok = td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if !ok {
        return Err("trust domain may only hold lowercase letters, digits, '.', '-' and '_'");
    }
    Ok(())
}

/// What to say about a bad path segment.
struct Segment {
    empty: &'static str,
    bad_chars: &'static str,
}

const NAMESPACE: Segment = Segment {
    empty: "namespace is empty",
    bad_chars: "namespace may only hold letters, digits, '.', '-' and '_'",
};

const SERVICE_ACCOUNT: Segment = Segment {
    empty: "service account is empty",
    bad_chars: "service account may only hold letters, digits, '.', '-' and '_'",
};

/// SPIFFE path segments: letters, digits, `.`, `-` and `_`, not empty, not `.` or `..`.
fn check_segment(seg: &str, what: &Segment) -> Result<(), &'static str> {
    if seg.is_empty() {
        return Err(what.empty);
    }
    if seg == "." || seg == ".." {
        return Err("path segments may not be '.' or '..'");
    }
    let ok = seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !ok {
        return Err(what.bad_chars);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
