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

use super::matchers::{StringMatch, ip_in};
use super::policy::{
    Action, Condition, ConditionTest, Operation, Policy, PolicyRef, Rule, Source, Values,
};
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
    let view = ConnView::new(conn);
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

/// The connection with its identity strings computed once.
struct ConnView<'a> {
    conn: &'a ConnAttrs,
    principal: Option<String>,
}

impl<'a> ConnView<'a> {
    fn new(conn: &'a ConnAttrs) -> Self {
        Self {
            conn,
            principal: conn.src_identity.as_ref().map(PeerIdentity::principal),
        }
    }

    fn namespace(&self) -> Option<&str> {
        self.conn
            .src_identity
            .as_ref()
            .map(|i| i.namespace.as_str())
    }
}

/// Positive list (empty = no constraint) AND negative list (none may match).
fn pos_neg<T>(pos: &[T], neg: &[T], pred: impl Fn(&T) -> bool) -> bool {
    (pos.is_empty() || pos.iter().any(&pred)) && !neg.iter().any(&pred)
}

/// String matchers against an attribute that is absent for plaintext connections.
fn str_attr(pos: &[StringMatch], neg: &[StringMatch], value: Option<&str>) -> bool {
    pos_neg(pos, neg, |m| value.is_some_and(|v| m.matches(v)))
}

impl Policy {
    fn matches(&self, conn: &ConnView<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(self.action, conn))
    }
}

impl Rule {
    fn matches(&self, action: Action, conn: &ConnView<'_>) -> bool {
        if action == Action::Allow && self.has_l7() {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(conn)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(conn)))
            && self.when.iter().all(|c| c.matches(conn))
    }
}

impl Source {
    /// The L4 fields; request principals are left to the caller's fail-closed handling.
    fn matches(&self, conn: &ConnView<'_>) -> bool {
        let id = conn.conn.src_identity.as_ref();
        let src = conn.conn.src_ip;
        str_attr(
            &self.principals,
            &self.not_principals,
            conn.principal.as_deref(),
        ) && str_attr(&self.namespaces, &self.not_namespaces, conn.namespace())
            && pos_neg(&self.service_accounts, &self.not_service_accounts, |m| {
                id.is_some_and(|id| m.matches(id))
            })
            && pos_neg(&self.ip_blocks, &self.not_ip_blocks, |b| {
                ip_in(std::slice::from_ref(b), src)
            })
            && pos_neg(&self.remote_ip_blocks, &self.not_remote_ip_blocks, |b| {
                ip_in(std::slice::from_ref(b), src)
            })
    }
}

impl Operation {
    fn matches(&self, conn: &ConnView<'_>) -> bool {
        pos_neg(&self.ports, &self.not_ports, |p| *p == conn.conn.dst_port)
    }
}

fn ip_values(v: &Values<ipnet::IpNet>, ip: IpAddr) -> bool {
    pos_neg(&v.values, &v.not_values, |b| {
        ip_in(std::slice::from_ref(b), ip)
    })
}

impl Condition {
    fn matches(&self, conn: &ConnView<'_>) -> bool {
        let c = conn.conn;
        match &self.test {
            ConditionTest::SourceIp(v) | ConditionTest::RemoteIp(v) => ip_values(v, c.src_ip),
            ConditionTest::DestinationIp(v) => ip_values(v, c.dst_ip),
            ConditionTest::SourceNamespace(v) => {
                str_attr(&v.values, &v.not_values, conn.namespace())
            }
            ConditionTest::SourcePrincipal(v) => {
                str_attr(&v.values, &v.not_values, conn.principal.as_deref())
            }
            ConditionTest::DestinationPort(v) => {
                pos_neg(&v.values, &v.not_values, |p| *p == c.dst_port)
            }
            // Only reachable in DENY policies (ALLOW rules with L7 parts never match): ignoring
            // the condition makes the deny broader, never narrower.
            ConditionTest::NotL4 => true,
        }
    }
}
