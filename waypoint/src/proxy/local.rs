//! Responses the waypoint makes itself (no route, no backend, timeouts, faults, redirects), with
//! Envoy's bodies and response flags; gRPC callers get HTTP 200 with a `grpc-status` instead.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};

use crate::upstream::Body;

/// Why the waypoint answered itself; the Envoy response flag goes to metrics and access logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No route matched (404, `NR`).
    NoRoute,
    /// The rule has no usable backend (500, `NC`).
    NoBackend,
    /// The backend service has no endpoint (503, `UH`).
    NoHealthyUpstream,
    /// Connecting to or talking with the endpoint failed (503, `UF`).
    UpstreamFailure,
    /// Retries were exhausted on connection failures (503, `URX`).
    RetriesExhausted,
    /// A timeout ran out (504, `UT`).
    Timeout,
    /// An injected abort (its status, `FI`).
    FaultAbort,
    /// An injected delay before a forwarded request (`DI`).
    FaultDelay,
    /// An unresolvable filter (500, `-`).
    BadFilter,
    /// A redirect filter (its status, `-`).
    Redirect,
    /// A CORS preflight answer (200, `-`).
    Preflight,
    /// A malformed or ambiguous request (400, `DPE`).
    BadRequest,
    /// Denied by an AuthorizationPolicy (403, `RBAC`).
    Denied,
    /// A DestinationRule connection-pool limit was reached (503, `UO`).
    Overflow,
    /// A JWT was present but invalid (401).
    Unauthenticated,
}

impl Reason {
    /// The Envoy response flag.
    pub fn flag(self) -> &'static str {
        match self {
            Self::NoRoute => "NR",
            Self::NoBackend => "NC",
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamFailure => "UF",
            Self::RetriesExhausted => "URX",
            Self::Timeout => "UT",
            Self::FaultAbort => "FI",
            Self::FaultDelay => "DI",
            Self::BadRequest => "DPE",
            Self::Denied => "RBAC",
            Self::Overflow => "UO",
            Self::Unauthenticated => "-",
            Self::BadFilter | Self::Redirect | Self::Preflight => "-",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Self::NoRoute => "",
            Self::NoBackend => "no backend for this route",
            Self::NoHealthyUpstream => "no healthy upstream",
            Self::UpstreamFailure | Self::RetriesExhausted => {
                "upstream connect error or disconnect/reset before headers"
            }
            Self::Timeout => "upstream request timeout",
            Self::FaultAbort => "fault filter abort",
            Self::BadFilter => "route filter cannot be applied",
            Self::BadRequest => "bad request",
            Self::Denied => "RBAC: access denied",
            Self::Unauthenticated => "Jwt verification fails",
            Self::Overflow => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            }
            Self::Redirect | Self::Preflight | Self::FaultDelay => "",
        }
    }
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// The gRPC status Envoy maps an HTTP status of a local reply to.
pub fn grpc_status_for(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// A local reply with `status` for `reason`; `grpc` turns it into HTTP 200 + `grpc-status`
/// (`grpc_status` overrides the mapped code).
pub fn reply(status: u16, reason: Reason, grpc: bool, grpc_status: Option<u32>) -> Response<Body> {
    if grpc {
        let code = grpc_status.unwrap_or_else(|| grpc_status_for(status));
        let mut resp = Response::new(empty());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(code));
        if let Ok(v) = HeaderValue::from_str(reason.body().trim())
            && !v.is_empty()
        {
            h.insert("grpc-message", v);
        }
        return resp;
    }
    let body = reason.body();
    let mut resp = Response::new(if body.is_empty() { empty() } else { full(body) });
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_callers_get_a_grpc_status() {
        let r = reply(503, Reason::NoHealthyUpstream, true, None);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
        let r = reply(404, Reason::NoRoute, true, None);
        assert_eq!(r.headers()["grpc-status"], "12");
        let r = reply(500, Reason::FaultAbort, true, Some(4));
        assert_eq!(r.headers()["grpc-status"], "4");
    }

    #[test]
    fn http_callers_get_the_status_and_envoy_bodies() {
        let r = reply(504, Reason::Timeout, false, None);
        assert_eq!(r.status(), 504);
        assert_eq!(Reason::Timeout.flag(), "UT");
        let r = redirect(301, "http://example.org/x");
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "http://example.org/x");
    }
}
