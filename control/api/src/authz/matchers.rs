//! Value matchers of AuthorizationPolicy fields: Istio string patterns, service accounts, IP
//! blocks and ports. Each parses once from the policy text and serializes back to it.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::identity::PeerIdentity;
use crate::model::names;

/// Istio string match: `"abc"` exact, `"abc*"` prefix, `"*abc"` suffix, `"*"` any non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StringMatch {
    /// The value equals the string.
    Exact(String),
    /// The value starts with the string (pattern `abc*`).
    Prefix(String),
    /// The value ends with the string (pattern `*abc`).
    Suffix(String),
    /// The value is present and not empty (pattern `*`).
    Presence,
}

impl StringMatch {
    /// Parses an Istio pattern; `*` is allowed only alone, first or last.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty string is not a valid value: remove it or use \"*\"".into());
        }
        let m = if pattern == "*" {
            Self::Presence
        } else if let Some(s) = pattern.strip_prefix('*') {
            Self::Suffix(s.to_string())
        } else if let Some(p) = pattern.strip_suffix('*') {
            Self::Prefix(p.to_string())
        } else {
            Self::Exact(pattern.to_string())
        };
        let inner = match &m {
            Self::Exact(s) | Self::Prefix(s) | Self::Suffix(s) => s.as_str(),
            Self::Presence => "",
        };
        if inner.contains('*') {
            return Err(format!(
                "{pattern:?}: '*' is only allowed alone, at the start (suffix match) or at the end (prefix match)"
            ));
        }
        Ok(m)
    }

    /// Whether `value` matches. An empty value (an absent attribute) never matches.
    pub fn matches(&self, value: &str) -> bool {
        if value.is_empty() {
            return false;
        }
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Suffix(s) => value.ends_with(s.as_str()),
            Self::Presence => true,
        }
    }
}

impl TryFrom<String> for StringMatch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<StringMatch> for String {
    fn from(m: StringMatch) -> String {
        m.to_string()
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => write!(f, "{s}"),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Suffix(s) => write!(f, "*{s}"),
            Self::Presence => write!(f, "*"),
        }
    }
}

/// A service account, `<namespace>/<name>` (a bare `<name>` means the policy's namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountMatch {
    /// Namespace of the service account.
    pub namespace: String,
    /// Name of the service account.
    pub service_account: String,
}

impl ServiceAccountMatch {
    /// Parses `<ns>/<sa>`, or `<sa>` in `policy_namespace`.
    pub fn parse(value: &str, policy_namespace: &str) -> Result<Self, String> {
        let (ns, sa) = value.split_once('/').unwrap_or((policy_namespace, value));
        names::dns_label(ns).map_err(|e| format!("service account {value:?}: namespace {e}"))?;
        names::dns_subdomain(sa).map_err(|e| format!("service account {value:?}: name {e}"))?;
        Ok(Self {
            namespace: ns.to_string(),
            service_account: sa.to_string(),
        })
    }

    /// Whether the identity runs as this service account (any trust domain).
    pub fn matches(&self, id: &PeerIdentity) -> bool {
        id.namespace == self.namespace && id.service_account == self.service_account
    }
}

impl fmt::Display for ServiceAccountMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// Parses an IP block: a CIDR (`10.0.0.0/16`) or a single address (`10.0.0.1`).
pub fn parse_ip_block(value: &str) -> Result<IpNet, String> {
    if value.contains('/') {
        value
            .parse::<IpNet>()
            .map_err(|_| format!("{value:?} is not a CIDR: expected e.g. 10.0.0.0/16 or fd00::/64"))
    } else {
        value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{value:?} is not an IP address or CIDR"))
    }
}

/// Whether `ip` is inside any of `blocks` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn ip_in(blocks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    blocks.iter().any(|b| b.contains(&ip))
}

/// Parses a port number 1..=65535.
pub fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!(
            "{value:?} is not a port: expected a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_patterns() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc*", "abcd", true),
            ("abc*", "abc", true),
            ("abc*", "xabc", false),
            ("*abc", "xabc", true),
            ("*abc", "abcx", false),
            ("*", "anything", true),
            ("*", "", false),
            ("abc", "", false),
        ];
        for (pattern, value, expected) in cases {
            let m = StringMatch::parse(pattern).expect(pattern);
            assert_eq!(m.matches(value), expected, "{pattern} vs {value}");
            assert_eq!(m.to_string(), pattern);
        }
        for bad in ["", "a*b", "**", "*a*"] {
            assert!(StringMatch::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn service_accounts() {
        let m = ServiceAccountMatch::parse("other/client", "default").expect("valid");
        assert_eq!(
            (m.namespace.as_str(), m.service_account.as_str()),
            ("other", "client")
        );
        let m = ServiceAccountMatch::parse("client", "default").expect("valid");
        assert_eq!(m.namespace, "default");
        assert!(m.matches(&PeerIdentity::new("any.td", "default", "client")));
        assert!(!m.matches(&PeerIdentity::new("any.td", "other", "client")));
        for bad in ["", "a/b/c", "/x", "x/", "A/b"] {
            assert!(
                ServiceAccountMatch::parse(bad, "default").is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn ip_blocks_and_ports() {
        let blocks = vec![
            parse_ip_block("10.1.0.0/16").expect("cidr"),
            parse_ip_block("192.168.0.7").expect("ip"),
        ];
        assert!(ip_in(&blocks, "10.1.200.3".parse().expect("ip")));
        assert!(ip_in(&blocks, "::ffff:10.1.0.1".parse().expect("ip")));
        assert!(ip_in(&blocks, "192.168.0.7".parse().expect("ip")));
        assert!(!ip_in(&blocks, "192.168.0.8".parse().expect("ip")));
        assert!(ip_in(
            &[parse_ip_block("fd00::/64").expect("v6")],
            "fd00::5".parse().expect("ip")
        ));
        for bad in ["10.1.0.0/33", "10.1.0", "host", ""] {
            assert!(parse_ip_block(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_port("8080"), Ok(8080));
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad} accepted");
        }
    }
}
