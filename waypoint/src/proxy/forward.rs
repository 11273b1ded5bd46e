//! Sending a request upstream: endpoint choice per attempt, per-try and overall timeouts,
//! retries on connection failures and on retriable status codes with backoff.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version as HttpVersion};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_api::l7::Retry;
use mesh_api::l7::istio::TrafficPolicy;
use mesh_api::l7::route::DEFAULT_RETRY_BACKOFF;

use super::balance::Balancer;
use super::body::RequestBody;
use super::local::Reason;
use crate::resolve::Picked;
use crate::upstream::{Body, BoxError, Upstreams, Version};

/// Retries of a request on connection failures when its rule names no retry policy (a pooled
/// connection the server closed meanwhile, an endpoint that just went away).
pub const DEFAULT_CONNECT_RETRIES: u32 = 1;

/// Headers that describe one connection and are never forwarded (parsed once: removing by a
/// `&str` name parsed it again for every request).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::PROXY_AUTHORIZATION,
];

/// What the attempts may do.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Statuses that are retried.
    pub codes: Vec<u16>,
    /// The retry policy the backoff comes from (Envoy's 25 ms base when `None`).
    pub retry: Option<Retry>,
    /// Whether connection failures and resets are retried.
    pub on_failure: bool,
    /// Limit of each attempt.
    pub per_try: Option<Duration>,
}

/// The template every attempt's request is built from.
#[derive(Debug, Clone)]
pub struct Head {
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Authority to present (Host / `:authority`).
    pub authority: String,
    /// Headers (hop-by-hop removed, Host removed).
    pub headers: HeaderMap,
    /// Protocol spoken upstream.
    pub version: Version,
}

impl Head {
    /// Builds the template from a request head.
    pub fn new(parts: &http::request::Parts, authority: String, version: Version) -> Self {
        let mut headers = parts.headers.clone();
        let listed: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .collect();
        for h in &HOP_BY_HOP {
            if *h == header::TE && version == Version::Http2 {
                continue;
            }
            headers.remove(h);
        }
        for h in &listed {
            if h == "te" && version == Version::Http2 {
                continue;
            }
            headers.remove(h.as_str());
        }
        headers.remove(header::HOST);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        Self {
            method: parts.method.clone(),
            path,
            authority,
            headers,
            version,
        }
    }

    /// A request for one attempt.
    pub fn request(&self, body: Body) -> Result<Request<Body>, http::Error> {
        let mut b = Request::builder().method(self.method.clone());
        b = match self.version {
            Version::Http1 => b
                .uri(self.path.as_str())
                .version(HttpVersion::HTTP_11)
                .header(header::HOST, HeaderValue::from_str(&self.authority)?),
            Version::Http2 => b
                .uri(
                    Uri::builder()
                        .scheme("http")
                        .authority(self.authority.as_str())
                        .path_and_query(self.path.as_str())
                        .build()?,
                )
                .version(HttpVersion::HTTP_2),
        };
        let mut req = b.body(body)?;
        req.headers_mut()
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(req)
    }
}

/// How forwarding ended without a usable response.
#[derive(Debug)]
pub struct Failed {
    /// Status for the client.
    pub status: u16,
    /// Why.
    pub reason: Reason,
    /// Detail for the access log.
    pub error: String,
}

/// A response and where it came from.
pub struct Forwarded {
    /// The upstream response.
    pub response: Response<Incoming>,
    /// The endpoint that answered.
    pub endpoint: Picked,
}

/// Where and how attempts are sent.
pub struct Upstream<'a> {
    /// Connections.
    pub upstreams: &'a Upstreams,
    /// Endpoint choice and outlier state.
    pub balancer: &'a Balancer,
    /// Balancer key of the service (subset).
    pub key: &'a str,
    /// The service's (subset's) DestinationRule policy.
    pub policy: &'a TrafficPolicy,
}

/// Runs the attempts. `attempts` counts them for the access log.
pub async fn forward(
    up: &Upstream<'_>,
    endpoints: &[Picked],
    head: &Head,
    body: &mut RequestBody,
    policy: &Policy,
    request_bytes: &Arc<AtomicU64>,
    attempts: &mut u32,
) -> Result<Forwarded, Failed> {
    let mut last: Option<usize> = None;
    loop {
        *attempts += 1;
        let tp = up.policy;
        let i = up.balancer.pick(up.key, endpoints, tp.load_balancer, last);
        last = Some(i);
        let ep = &endpoints[i];
        let Some(b) = body.take(request_bytes) else {
            return Err(Failed {
                status: 503,
                reason: Reason::UpstreamFailure,
                error: "streamed request body cannot be sent twice".into(),
            });
        };
        let req = head.request(b).map_err(|e| Failed {
            status: 400,
            reason: Reason::BadRequest,
            error: format!("cannot build the upstream request: {e}"),
        })?;
        let reuse = tp.max_requests_per_connection != Some(1);
        let in_flight = up.balancer.begin(ep);
        let sending = up.upstreams.send(&ep.endpoint, head.version, req, reuse);
        let result = match policy.per_try {
            Some(t) => tokio::time::timeout(t, sending).await.map_err(|_| ()),
            None => Ok(sending.await),
        };
        drop(in_flight);
        let status = match &result {
            Ok(Ok(resp)) => Some(resp.status().as_u16()),
            _ => None,
        };
        up.balancer
            .report(ep, status, tp.outlier.as_ref(), endpoints);
        let can_retry = *attempts <= policy.retries && body.replayable();
        let connect_retry = can_retry && policy.on_failure;
        let failure = match result {
            Ok(Ok(resp)) if can_retry && policy.codes.contains(&resp.status().as_u16()) => {
                let status = resp.status();
                drop(resp);
                tracing::debug!(%status, endpoint = %ep.endpoint.addr, "retrying on status");
                None
            }
            Ok(Ok(resp)) => {
                return Ok(Forwarded {
                    response: resp,
                    endpoint: ep.clone(),
                });
            }
            Ok(Err(e)) => Some(Failed {
                status: 503,
                reason: if *attempts > 1 {
                    Reason::RetriesExhausted
                } else {
                    Reason::UpstreamFailure
                },
                error: e.to_string(),
            }),
            Err(()) => Some(Failed {
                status: 504,
                reason: Reason::Timeout,
                error: format!(
                    "no response from {} within the per-try timeout",
                    ep.endpoint.addr
                ),
            }),
        };
        if let Some(f) = failure {
            let retriable = if f.reason == Reason::Timeout {
                can_retry
            } else {
                connect_retry
            };
            if !retriable {
                return Err(f);
            }
            tracing::debug!(error = %f.error, "retrying");
        }
        let wait = match &policy.retry {
            Some(r) => r.backoff_for(*attempts),
            None => DEFAULT_RETRY_BACKOFF,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Maps an upstream response body into the waypoint's body type.
pub fn boxed(resp: Response<Incoming>) -> Response<Body> {
    resp.map(|b| b.map_err(BoxError::from).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().uri("/p?q=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_not_forwarded() {
        let p = parts(&[
            ("host", "svc:80"),
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "secret"),
            ("x-kept", "yes"),
        ]);
        let h1 = Head::new(&p, "svc:80".into(), Version::Http1);
        let names: Vec<&str> = h1.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
        assert_eq!(h1.path, "/p?q=1");
        // HTTP/2 upstream keeps `te: trailers` (gRPC needs it).
        let h2 = Head::new(&p, "svc:80".into(), Version::Http2);
        assert_eq!(
            h2.headers.get("te").map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
        assert!(h2.headers.get("x-private").is_none());
        let req = h1.request(crate::proxy::local::full("")).unwrap();
        assert_eq!(req.headers()["host"], "svc:80");
        assert_eq!(req.headers()["x-kept"], "yes");
    }
}
