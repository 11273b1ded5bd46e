//! The L4 half of a rule, shared by ztunnel's evaluation ([`super::evaluate`]) and the
//! waypoint's (`l7::authz`), so that `principals`, `namespaces`, `serviceAccounts`, `ipBlocks`,
//! `ports` and the L4 `when` keys mean the same on both paths.
//!
//! A peer without identity (plaintext) never matches `principals`, `namespaces` or
//! `serviceAccounts`, and therefore always satisfies their `not*` forms.

use std::net::IpAddr;

use super::matchers::{StringMatch, ip_in};
use super::policy::{ConditionTest, Operation, Source, Values};
use crate::identity::PeerIdentity;

/// The L4 facts of a connection, with the peer's principal computed once.
pub(crate) struct L4Peer<'a> {
    src_identity: Option<&'a PeerIdentity>,
    principal: Option<String>,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    dst_port: u16,
}

impl<'a> L4Peer<'a> {
    pub(crate) fn new(
        src_identity: Option<&'a PeerIdentity>,
        src_ip: IpAddr,
        dst_ip: IpAddr,
        dst_port: u16,
    ) -> Self {
        Self {
            src_identity,
            principal: src_identity.map(PeerIdentity::principal),
            src_ip,
            dst_ip,
            dst_port,
        }
    }

    fn namespace(&self) -> Option<&str> {
        self.src_identity.map(|i| i.namespace.as_str())
    }

    /// The L4 fields of a `from` source; request principals are the caller's to check.
    pub(crate) fn source(&self, s: &Source) -> bool {
        let (id, src) = (self.src_identity, self.src_ip);
        str_attr(&s.principals, &s.not_principals, self.principal.as_deref())
            && str_attr(&s.namespaces, &s.not_namespaces, self.namespace())
            && pos_neg(&s.service_accounts, &s.not_service_accounts, |m| {
                id.is_some_and(|id| m.matches(id))
            })
            && pos_neg(&s.ip_blocks, &s.not_ip_blocks, |b| {
                ip_in(std::slice::from_ref(b), src)
            })
            && pos_neg(&s.remote_ip_blocks, &s.not_remote_ip_blocks, |b| {
                ip_in(std::slice::from_ref(b), src)
            })
    }

    /// The `ports` of a `to` operation (its HTTP fields are the caller's).
    pub(crate) fn ports(&self, o: &Operation) -> bool {
        pos_neg(&o.ports, &o.not_ports, |p| *p == self.dst_port)
    }

    /// A `when` condition on an L4 key; `None` for any other key (the caller decides).
    pub(crate) fn condition(&self, test: &ConditionTest) -> Option<bool> {
        Some(match test {
            ConditionTest::SourceIp(v) | ConditionTest::RemoteIp(v) => ip_values(v, self.src_ip),
            ConditionTest::DestinationIp(v) => ip_values(v, self.dst_ip),
            ConditionTest::SourceNamespace(v) => {
                str_attr(&v.values, &v.not_values, self.namespace())
            }
            ConditionTest::SourcePrincipal(v) => {
                str_attr(&v.values, &v.not_values, self.principal.as_deref())
            }
            ConditionTest::DestinationPort(v) => {
                pos_neg(&v.values, &v.not_values, |p| *p == self.dst_port)
            }
            ConditionTest::NotL4 => return None,
        })
    }
}

/// Positive list (empty = no constraint) AND negative list (none may match).
pub(crate) fn pos_neg<T>(pos: &[T], neg: &[T], pred: impl Fn(&T) -> bool) -> bool {
    (pos.is_empty() || pos.iter().any(&pred)) && !neg.iter().any(&pred)
}

/// String matchers against an attribute that may be absent (plaintext, no JWT).
pub(crate) fn str_attr(pos: &[StringMatch], neg: &[StringMatch], value: Option<&str>) -> bool {
    pos_neg(pos, neg, |m| value.is_some_and(|v| m.matches(v)))
}

fn ip_values(v: &Values<ipnet::IpNet>, ip: IpAddr) -> bool {
    pos_neg(&v.values, &v.not_values, |b| {
        ip_in(std::slice::from_ref(b), ip)
    })
}
