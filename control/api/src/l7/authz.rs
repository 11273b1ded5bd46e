//! AuthorizationPolicy at L7, as the waypoint enforces it: policies with `targetRefs` to the
//! waypoint's Gateway, to the destination Service, or (in the root namespace) to the
//! `istio-waypoint` GatewayClass; every field evaluated, HTTP and JWT attributes included.
//!
//! Istio's semantics: DENY policies first (any matching rule denies), then ALLOW (with ALLOW
//! policies present, some rule of one must match). Fields of a source/operation are ANDed,
//! values ORed, `not*` values negated. Hosts compare case-insensitively without port; paths,
//! hosts and principals use Istio's `*` prefix/suffix patterns. `AUDIT` policies are matched
//! separately ([`audited`]) and never decide.

use std::net::IpAddr;

use super::matching::RequestView;
use crate::authz::l4::{L4Peer, pos_neg, str_attr};
use crate::authz::{
    Action, Condition, Decision, DenyReason, Operation, Policy, Rule, Source, StringMatch,
};
use crate::identity::PeerIdentity;

/// What the waypoint knows about a request when it authorizes it.
pub struct HttpAttrs<'a> {
    /// Client identity (mTLS); `None` for plaintext.
    pub src_identity: Option<&'a PeerIdentity>,
    /// Original client address.
    pub src_ip: IpAddr,
    /// Destination address (service VIP or workload).
    pub dst_ip: IpAddr,
    /// Destination port (the port the client dialed).
    pub dst_port: u16,
    /// Host without port, as received.
    pub host: &'a str,
    /// `<iss>/<sub>` of the request's valid JWT, if any.
    pub request_principal: Option<&'a str>,
    /// The JWT claims, if any.
    pub claims: Option<&'a serde_json::Value>,
}

/// Which policies apply: targets `Gateway gateway`, `Service service` (both `(ns, name)`), or
/// the `istio-waypoint` GatewayClass from the root namespace.
pub fn applicable<'p>(
    policies: &'p [Policy],
    root_namespace: &str,
    gateway: (&str, &str),
    service: Option<(&str, &str)>,
) -> Vec<&'p Policy> {
    policies
        .iter()
        .filter(|p| {
            p.target_refs.iter().any(|t| {
                let ns = t.namespace.as_deref().unwrap_or(&p.namespace);
                match t.kind.as_str() {
                    "Gateway" => (ns, t.name.as_str()) == gateway,
                    "Service" => Some((ns, t.name.as_str())) == service,
                    "GatewayClass" => p.namespace == root_namespace && t.name == "istio-waypoint",
                    _ => false,
                }
            })
        })
        .collect()
}

/// Decides a request against `policies` (see [`applicable`]).
pub fn evaluate(policies: &[&Policy], a: &HttpAttrs<'_>, req: &dyn RequestView) -> Decision {
    let cx = Cx::new(a, req);
    for p in policies.iter().filter(|p| p.action == Action::Deny) {
        if p.rules.iter().any(|r| cx.rule(r)) {
            return Decision::Deny(DenyReason::DeniedBy(p.key()));
        }
    }
    let mut tried = Vec::new();
    for p in policies.iter().filter(|p| p.action == Action::Allow) {
        if p.rules.iter().any(|r| cx.rule(r)) {
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

/// The `AUDIT` policies (see `L7Config::audit_policies`) with a rule matching the request: the
/// waypoint logs them; they never change the decision.
pub fn audited(
    policies: &[&Policy],
    a: &HttpAttrs<'_>,
    req: &dyn RequestView,
) -> Vec<crate::authz::PolicyRef> {
    let cx = Cx::new(a, req);
    policies
        .iter()
        .filter(|p| p.rules.iter().any(|r| cx.rule(r)))
        .map(|p| p.key())
        .collect()
}

struct Cx<'a> {
    a: &'a HttpAttrs<'a>,
    req: &'a dyn RequestView,
    l4: L4Peer<'a>,
}

impl<'a> Cx<'a> {
    fn new(a: &'a HttpAttrs<'a>, req: &'a dyn RequestView) -> Self {
        let l4 = L4Peer::new(a.src_identity, a.src_ip, a.dst_ip, a.dst_port);
        Self { a, req, l4 }
    }
}

/// An Istio pattern written as a plain string in the policy (hosts, paths, methods).
fn pattern_matches(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v) = if ignore_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    StringMatch::parse(&p).is_ok_and(|m| m.matches(&v))
}

impl Cx<'_> {
    fn rule(&self, r: &Rule) -> bool {
        (r.from.is_empty() || r.from.iter().any(|s| self.source(s)))
            && (r.to.is_empty() || r.to.iter().any(|o| self.operation(o)))
            && r.when.iter().all(|c| self.condition(c))
    }

    fn source(&self, s: &Source) -> bool {
        self.l4.source(s)
            && str_attr(
                &s.request_principals,
                &s.not_request_principals,
                self.a.request_principal,
            )
    }

    fn operation(&self, o: &Operation) -> bool {
        let path = self.req.path();
        self.l4.ports(o)
            && pos_neg(&o.hosts, &o.not_hosts, |h| {
                pattern_matches(h.split(':').next().unwrap_or(h), self.a.host, true)
            })
            && pos_neg(&o.methods, &o.not_methods, |m| {
                pattern_matches(m, self.req.method(), false)
            })
            && pos_neg(&o.paths, &o.not_paths, |p| pattern_matches(p, path, false))
    }

    /// The value(s) of an L7 `when` key, or `None` when the request has no such attribute.
    fn attribute(&self, key: &str) -> Option<Vec<String>> {
        if let Some(h) = key
            .strip_prefix("request.headers[")
            .and_then(|k| k.strip_suffix(']'))
        {
            return self
                .req
                .header(&h.to_ascii_lowercase())
                .map(|v| vec![v.into_owned()]);
        }
        if let Some(path) = key.strip_prefix("request.auth.claims[") {
            let mut v = self.a.claims?;
            for part in path.trim_end_matches(']').split("][") {
                v = v.get(part)?;
            }
            return Some(match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect(),
                other => vec![other.to_string()],
            });
        }
        match key {
            "request.auth.principal" => self.a.request_principal.map(|p| vec![p.to_owned()]),
            "request.auth.audiences" => self.claim_list("aud"),
            "request.auth.presenter" => self.claim_list("azp"),
            _ => None,
        }
    }

    fn claim_list(&self, claim: &str) -> Option<Vec<String>> {
        match self.a.claims?.get(claim)? {
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn condition(&self, c: &Condition) -> bool {
        if let Some(l4) = self.l4.condition(&c.test) {
            return l4;
        }
        // Unknown keys have no value: their `values` never match (fail closed).
        let seen = self.attribute(&c.key).unwrap_or_default();
        let hit = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| seen.iter().any(|s| pattern_matches(p, s, false)))
        };
        (c.values.is_empty() || hit(&c.values)) && !hit(&c.not_values)
    }
}

#[cfg(test)]
#[path = "authz/tests.rs"]
mod tests;
