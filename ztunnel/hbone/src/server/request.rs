//! Validation of an incoming HBONE `CONNECT` request into a [`ConnectRequest`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use h2::Reason;
use http::{HeaderMap, Method, Request, StatusCode};

use super::ConnInfo;

/// Header carrying the original client address (RFC 7239), e.g. `for="10.0.0.1:4321"`.
pub const FORWARDED: &str = "forwarded";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C baggage header (Istio puts workload metadata there).
pub const BAGGAGE: &str = "baggage";

/// A validated HBONE `CONNECT` request.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The final target from `:authority` (`<ip>:<port>`).
    pub authority: SocketAddr,
    /// The original client from `forwarded: for=...`; port 0 when the header named only an IP.
    /// `None` when absent or unparseable (garbage is tolerated).
    pub forwarded_for: Option<SocketAddr>,
    /// The W3C `traceparent`, when present and valid UTF-8.
    pub traceparent: Option<String>,
    /// The W3C `baggage`, when present and valid UTF-8.
    pub baggage: Option<String>,
    /// The connection the request came on: peer identity and addresses.
    pub conn: Arc<ConnInfo>,
    /// All request headers, for anything not parsed above.
    pub headers: HeaderMap,
}

impl ConnectRequest {
    /// True when the authority's IP is the address the connection was accepted on (the check
    /// Istio's ztunnel makes for inbound HBONE; a mismatch should be answered with 400).
    pub fn authority_matches_local(&self) -> bool {
        authority_ip_matches(self.authority, self.conn.local_addr)
    }
}

/// True when `authority` names the same IP as `local` (IPv4-mapped IPv6 counts as IPv4).
pub fn authority_ip_matches(authority: SocketAddr, local: SocketAddr) -> bool {
    authority.ip().to_canonical() == local.ip().to_canonical()
}

/// Why a request is not handed to the handler, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Answer with this status (and end the stream).
    Status(StatusCode, &'static str),
    /// Reset the stream with this reason.
    Reset(Reason, &'static str),
}

/// Validates `req`. Malformed requests that h2 itself catches (`:path` with `CONNECT`, an
/// authority that is not URI syntax) never get here: h2 resets them with PROTOCOL_ERROR.
pub fn parse<B>(req: &Request<B>, conn: &Arc<ConnInfo>) -> Result<ConnectRequest, Rejection> {
    if req.method() != Method::CONNECT {
        return Err(Rejection::Status(
            StatusCode::BAD_REQUEST,
            "only CONNECT is allowed on HBONE",
        ));
    }
    let Some(authority) = req.uri().authority() else {
        return Err(Rejection::Status(
            StatusCode::BAD_REQUEST,
            "CONNECT without :authority",
        ));
    };
    match authority.port_u16() {
        None => {
            return Err(Rejection::Status(
                StatusCode::BAD_REQUEST,
                "CONNECT :authority without a port",
            ));
        }
        Some(0) => {
            return Err(Rejection::Status(
                StatusCode::BAD_REQUEST,
                "CONNECT :authority with port 0",
            ));
        }
        Some(_) => {}
    }
    let authority: SocketAddr = authority.as_str().parse().map_err(|_| {
        Rejection::Reset(
            Reason::PROTOCOL_ERROR,
            "CONNECT :authority is not <ip>:<port>",
        )
    })?;
    let headers = req.headers();
    Ok(ConnectRequest {
        authority,
        forwarded_for: headers
            .get(FORWARDED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_forwarded_for),
        traceparent: header_string(headers, TRACEPARENT),
        baggage: header_string(headers, BAGGAGE),
        conn: conn.clone(),
        headers: headers.clone(),
    })
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `for=` node of the first element of a `Forwarded` header (RFC 7239): `ip`, `ip:port`,
/// `"[v6]"` or `"[v6]:port"`, quoted or not. Anything else yields `None`.
pub fn parse_forwarded_for(value: &str) -> Option<SocketAddr> {
    let first = value.split(',').next()?;
    let node = first.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })?;
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = node
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(node);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_forms() {
        let v4: SocketAddr = "10.0.0.1:4321".parse().unwrap();
        assert_eq!(parse_forwarded_for("for=\"10.0.0.1:4321\""), Some(v4));
        assert_eq!(parse_forwarded_for("for=10.0.0.1:4321"), Some(v4));
        assert_eq!(
            parse_forwarded_for("proto=http;For=\"10.0.0.1:4321\", for=1.1.1.1"),
            Some(v4)
        );
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(parse_forwarded_for("for=\"[fd00::1]:80\""), Some(v6));
        let v6_bare: SocketAddr = "[fd00::1]:0".parse().unwrap();
        assert_eq!(parse_forwarded_for("for=\"[fd00::1]\""), Some(v6_bare));
        let v4_bare: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(parse_forwarded_for("for=10.0.0.1"), Some(v4_bare));
    }

    #[test]
    fn forwarded_garbage_is_none() {
        for g in [
            "",
            "garbage",
            "for=",
            "for=_hidden",
            "by=10.0.0.1",
            "for=\"10.0.0.1:99999\"",
        ] {
            assert_eq!(parse_forwarded_for(g), None, "{g}");
        }
    }

    #[test]
    fn authority_ip_check_handles_mapped_v4() {
        let auth: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert!(authority_ip_matches(
            auth,
            "10.1.2.3:15008".parse().unwrap()
        ));
        assert!(authority_ip_matches(
            auth,
            "[::ffff:10.1.2.3]:15008".parse().unwrap()
        ));
        assert!(!authority_ip_matches(
            auth,
            "10.1.2.4:15008".parse().unwrap()
        ));
    }
}
