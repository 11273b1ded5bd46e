//! Cluster DNS of local mode: a small authoritative server for `cluster.local` (hand-written
//! codec, RFC 1035 subset: one question per query, A answers, NXDOMAIN and NODATA with the zone's
//! SOA for negative caching, AAAA and other types -> NODATA, names outside the cluster ->
//! REFUSED). `meshctl local dns` ([`server`]) runs it in node-1's netns on
//! [`DNS_ADDR`]`:53`; pods get a `resolv.conf` pointing at it ([`server::write_resolv_conf`]).
//!
//! Names answered, relative to the asking pod's namespace (found from its source address):
//! `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`.

pub mod server;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The cluster domain.
pub const DOMAIN: &str = "cluster.local";
/// Where the cluster DNS listens: node-1's fabric address (reachable from every pod through its
/// node, which routes the fabric).
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
/// TTL of answers: short, services change often in tests.
pub const TTL: u32 = 5;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const HEADER_LEN: usize = 12;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// No error (an answer, or NODATA when there is none).
    NoError = 0,
    /// Malformed query.
    FormErr = 1,
    /// The name does not exist.
    NxDomain = 3,
    /// Opcode not supported.
    NotImp = 4,
    /// Not our zone (we do not recurse).
    Refused = 5,
}

/// The services, namespaces and pod addresses the server answers from (written by the runtime
/// to `<state>/dns/records.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// Services: their VIP, or the ready endpoints' addresses of a headless service.
    pub services: Vec<ServiceRecord>,
    /// Namespace of each pod address (for names relative to the asking pod).
    pub pods: BTreeMap<Ipv4Addr, String>,
}

/// One service's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Addresses (the VIP, or a headless service's ready pod addresses; may be empty).
    pub ips: Vec<Ipv4Addr>,
}

/// [`Records`] indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    services: BTreeMap<(String, String), Vec<Ipv4Addr>>,
    namespaces: BTreeSet<String>,
    pods: BTreeMap<Ipv4Addr, String>,
}

/// What a name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A service: its addresses.
    Found(Vec<Ipv4Addr>),
    /// The name exists in the zone but has no address records (`<ns>.svc.cluster.local`).
    NoData,
    /// Inside the zone, no such name.
    NxDomain,
    /// Outside the cluster's names.
    NotOurs,
}

impl Zone {
    /// Indexes `records`.
    pub fn new(records: &Records) -> Self {
        let mut zone = Self {
            pods: records.pods.clone(),
            ..Self::default()
        };
        for s in &records.services {
            let key = (
                s.namespace.to_ascii_lowercase(),
                s.name.to_ascii_lowercase(),
            );
            zone.namespaces.insert(key.0.clone());
            zone.services.insert(key, s.ips.clone());
        }
        zone.namespaces.extend(records.pods.values().cloned());
        zone
    }

    fn service(&self, ns: &str, name: &str) -> Lookup {
        match self.services.get(&(ns.to_owned(), name.to_owned())) {
            Some(ips) => Lookup::Found(ips.clone()),
            None => Lookup::NxDomain,
        }
    }

    /// What `name` (dotted, any case, trailing dot optional) is for a client at `client`.
    pub fn lookup(&self, name: &str, client: Option<Ipv4Addr>) -> Lookup {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        let client_ns = client.and_then(|ip| self.pods.get(&ip));
        match labels.as_slice() {
            [rest @ .., "svc", "cluster", "local"] => match rest {
                [svc, ns] => self.service(ns, svc),
                [] => Lookup::NoData,
                [ns] if self.namespaces.contains(*ns) => Lookup::NoData,
                _ => Lookup::NxDomain,
            },
            ["cluster", "local"] => Lookup::NoData,
            [.., "cluster", "local"] => Lookup::NxDomain,
            [svc, ns, "svc"] => self.service(ns, svc),
            [svc, ns] if self.namespaces.contains(*ns) => self.service(ns, svc),
            [svc] => match client_ns {
                Some(ns) => self.service(ns, svc),
                None => Lookup::NotOurs,
            },
            _ => Lookup::NotOurs,
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// The header's flags.
    pub flags: u16,
    /// The question's name, dotted, as sent.
    pub name: String,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// End of the question in the packet.
    question_end: usize,
}

/// Why a packet is not a query we answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Too short for a header, or a response: dropped without an answer.
    #[error("not a DNS query ({0})")]
    Drop(&'static str),
    /// Malformed after the header: answered with this code.
    #[error("bad query: {1}")]
    Answer(Rcode, &'static str),
}

/// Parses a query packet.
pub fn parse_query(buf: &[u8]) -> Result<Query, DnsError> {
    if buf.len() < HEADER_LEN {
        return Err(DnsError::Drop("shorter than a header"));
    }
    let u16_at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let (id, flags) = (u16_at(0), u16_at(2));
    if flags & 0x8000 != 0 {
        return Err(DnsError::Drop("a response"));
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(DnsError::Answer(Rcode::NotImp, "opcode is not QUERY"));
    }
    if u16_at(4) != 1 {
        return Err(DnsError::Answer(Rcode::FormErr, "not exactly one question"));
    }
    let mut pos = HEADER_LEN;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(
            *buf.get(pos)
                .ok_or(DnsError::Answer(Rcode::FormErr, "truncated name"))?,
        );
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Err(DnsError::Answer(
                Rcode::FormErr,
                "compressed or oversized label in the question",
            ));
        }
        let label = buf
            .get(pos..pos + len)
            .ok_or(DnsError::Answer(Rcode::FormErr, "truncated label"))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += len;
        if pos > HEADER_LEN + 255 {
            return Err(DnsError::Answer(
                Rcode::FormErr,
                "name longer than 255 bytes",
            ));
        }
    }
    if buf.len() < pos + 4 {
        return Err(DnsError::Answer(Rcode::FormErr, "truncated question"));
    }
    Ok(Query {
        id,
        flags,
        name: labels.join("."),
        qtype: u16_at(pos),
        qclass: u16_at(pos + 2),
        question_end: pos + 4,
    })
}

/// The answer to packet `buf` from `client`; `None` when it is dropped.
pub fn respond(buf: &[u8], zone: &Zone, client: Option<Ipv4Addr>) -> Option<Vec<u8>> {
    let q = match parse_query(buf) {
        Ok(q) => q,
        Err(DnsError::Drop(_)) => return None,
        Err(DnsError::Answer(rcode, _)) => {
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let flags = u16::from_be_bytes([buf[2], buf[3]]);
            return Some(header(id, flags, rcode, false, [0, 0, 0, 0]));
        }
    };
    let lookup = if q.qclass == CLASS_IN || q.qclass == TYPE_ANY {
        zone.lookup(&q.name, client)
    } else {
        Lookup::NotOurs
    };
    let (rcode, ips, soa) = match lookup {
        Lookup::Found(ips) if q.qtype == TYPE_A || q.qtype == TYPE_ANY => {
            let soa = ips.is_empty();
            (Rcode::NoError, ips, soa)
        }
        Lookup::Found(_) | Lookup::NoData => (Rcode::NoError, Vec::new(), true),
        Lookup::NxDomain => (Rcode::NxDomain, Vec::new(), true),
        Lookup::NotOurs => (Rcode::Refused, Vec::new(), false),
    };
    let authoritative = rcode != Rcode::Refused;
    let counts = [1, count(ips.len()), u16::from(soa), 0];
    let mut out = header(q.id, q.flags, rcode, authoritative, counts);
    out.extend_from_slice(&buf[HEADER_LEN..q.question_end]);
    for ip in ips {
        // The question's name by pointer (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    if soa {
        push_soa(&mut out);
    }
    Some(out)
}

fn count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn header(id: u16, query_flags: u16, rcode: Rcode, aa: bool, counts: [u16; 4]) -> Vec<u8> {
    // QR, the query's opcode and RD, AA when authoritative; RA never (we do not recurse).
    let flags = 0x8000 | (query_flags & 0x7900) | if aa { 0x0400 } else { 0 } | rcode as u16;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The zone's SOA in the authority section: its minimum (= [`TTL`]) is the negative-cache time.
fn push_soa(out: &mut Vec<u8>) {
    push_name(out, DOMAIN);
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    let mut rdata = Vec::new();
    push_name(&mut rdata, &format!("ns.dns.{DOMAIN}"));
    push_name(&mut rdata, &format!("hostmaster.{DOMAIN}"));
    for v in [1u32, 7200, 1800, 86400, TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&count(rdata.len()).to_be_bytes());
    out.extend_from_slice(&rdata);
}

#[cfg(test)]
mod tests;
