//! L4 evaluation of AuthorizationPolicies, with Istio's semantics as ztunnel applies them.
//!
//! - DENY policies first: any matching rule denies.
//! - Then ALLOW: with no ALLOW policy the connection is allowed; otherwise some rule of some
//!   ALLOW policy must match.
//! - Fail closed on what L4 cannot see (HTTP/JWT attributes, unknown `when` keys): in an ALLOW
//!   policy such a rule matches nothing; in a DENY policy those parts are ignored, so the rule
//!   matches whatever its L4 parts match (more restrictive than asked, like Istio's ztunnel).
//! - A connection without identity (plaintext) never matches `principals`, `namespaces`,
//!   `serviceAccounts` (nor `source.principal` / `source.namespace` conditions), and therefore
//!   always satisfies their `not*` forms, as in Istio (`notPrincipals: ["*"]` = plaintext only).

use std::fmt;
use std::net::IpAddr;

use super::l4::L4Peer;
use super::policy::{Action, Policy, PolicyRef, Rule};
use crate::identity::PeerIdentity;

/// What ztunnel knows about a connection when it authorizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAttrs {
    /// Peer identity from its mTLS certificate; `None` for plaintext.
    pub src_identity: Option<PeerIdentity>,
    /// Peer address.
    pub src_ip: IpAddr,
    /// Address the connection was made to (the destination workload's).
    pub dst_ip: IpAddr,
    /// Port the connection was made to (the destination workload's target port).
    pub dst_port: u16,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The connection may proceed.
    Allow,
    /// The connection must be refused, and why.
    Deny(DenyReason),
}

impl Decision {
    /// Whether the connection is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// Why a connection was denied (for the access log and the 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// A rule of this DENY policy matched.
    DeniedBy(PolicyRef),
    /// ALLOW policies apply to the workload but none matched; these were tried, in order.
    NoAllowMatch(Vec<PolicyRef>),
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeniedBy(p) => write!(f, "denied by DENY policy {p}"),
            Self::NoAllowMatch(tried) => {
                let names: Vec<String> = tried.iter().map(ToString::to_string).collect();
                write!(f, "no ALLOW policy matched (tried {})", names.join(", "))
            }
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Deny(reason) => write!(f, "deny: {reason}"),
        }
    }
}

/// Decides `conn` against the policies that apply to the destination workload
/// (see `ConfigSnapshot::policies_for`).
pub fn evaluate(policies: &[&Policy], conn: &ConnAttrs) -> Decision {
    let view = L4Peer::new(
        conn.src_identity.as_ref(),
        conn.src_ip,
        conn.dst_ip,
        conn.dst_port,
    );
    for p in policies.iter().filter(|p| p.action == Action::Deny) {
        if p.matches(&view) {
            return Decision::Deny(DenyReason::DeniedBy(p.key()));
        }
    }
    let mut tried = Vec::new();
    for p in policies.iter().filter(|p| p.action == Action::Allow) {
        if p.matches(&view) {
            return Decision::Allow;
        }
        tried.push(p.key());
    }
    if tried.is_empty() {
        Decision::Allow
    } else {
        Decision::Deny(DenyReason::NoAllowMatch(tried))
    }
}

impl Policy {
    fn matches(&self, conn: &L4Peer<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(self.action, conn))
    }
}

impl Rule {
    fn matches(&self, action: Action, conn: &L4Peer<'_>) -> bool {
        if action == Action::Allow && self.has_l7() {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| conn.source(s)))
            && (self.to.is_empty() || self.to.iter().any(|o| conn.ports(o)))
            && self.when.iter().all(|c| {
                // `None` (an L7 key) is only reachable in DENY policies (ALLOW rules with L7
                // parts never match): ignoring the condition makes the deny broader, never
                // narrower.
                conn.condition(&c.test).unwrap_or(true)
            })
    }
}
