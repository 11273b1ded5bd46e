//! Applying a rule's (or a backend's) filters to one request: header edits, rewrites, redirects,
//! CORS, fault injection; what must happen to the response is collected in [`Applied`].

use std::time::Duration;

use http::Response;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use mesh_api::l7::{Filter, HeaderModifier, Mirror, PathMatch, RequestTarget};

use super::local::{self, Reason};
use super::request::{Edit, View, joined};
use crate::upstream::Body;

/// What the filters left for later: response edits, mirrors, a host rewrite.
#[derive(Debug, Default)]
pub struct Applied<'r> {
    /// Response header edits, in order.
    pub response: Vec<&'r HeaderModifier>,
    /// CORS headers to add to the response.
    pub cors: Vec<(String, String)>,
    /// Mirrors to send copies to.
    pub mirrors: Vec<&'r Mirror>,
    /// New host (URLRewrite hostname).
    pub host: Option<String>,
    /// Total injected delay.
    pub delayed: Duration,
}

/// The request facts filters need besides its head.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Host without port.
    pub host: &'a str,
    /// Service (or workload) port the client dialed.
    pub port: u16,
    /// The path match that selected the rule (for prefix rewrites).
    pub matched: Option<&'a PathMatch>,
    /// gRPC call.
    pub grpc: bool,
}

/// An early answer produced by a filter, and why.
pub type Early = (Response<Body>, Reason);

fn set_path(parts: &mut Parts, target: &str) {
    let pq = match PathAndQuery::try_from(target) {
        Ok(pq) => pq,
        Err(e) => {
            tracing::warn!(target, error = %e, "rewritten path is not a valid request target");
            return;
        }
    };
    let mut p = parts.uri.clone().into_parts();
    p.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(p) {
        parts.uri = uri;
    }
}

/// Applies `filters` in order; returns an answer when one of them ends the request here.
pub async fn apply<'r>(
    filters: &'r [Filter],
    parts: &mut Parts,
    facts: Facts<'_>,
    applied: &mut Applied<'r>,
) -> Option<Early> {
    let any = PathMatch::Prefix("/".into());
    let matched = facts.matched.unwrap_or(&any);
    for f in filters {
        match f {
            Filter::RequestHeaderModifier(m) => m.apply(&mut Edit(&mut parts.headers)),
            Filter::ResponseHeaderModifier(m) => applied.response.push(m),
            Filter::RequestRedirect(r) => {
                let target = RequestTarget {
                    scheme: "http",
                    host: facts.host,
                    port: facts.port,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                };
                let location = r.location(&target, matched);
                return Some((local::redirect(r.status, &location), Reason::Redirect));
            }
            Filter::UrlRewrite(rw) => {
                let target = RequestTarget {
                    scheme: "http",
                    host: facts.host,
                    port: facts.port,
                    path: parts.uri.path(),
                    query: parts.uri.query(),
                };
                if let Some(new) = rw.rewritten_target(&target, matched) {
                    set_path(parts, &new);
                }
                if let Some(h) = &rw.hostname {
                    applied.host = Some(h.clone());
                }
            }
            Filter::RequestMirror(m) => applied.mirrors.push(m),
            Filter::Cors(c) => {
                let Some(origin) = joined(&parts.headers, "origin").map(|o| o.into_owned()) else {
                    continue;
                };
                let preflight = parts.method == http::Method::OPTIONS
                    && parts.headers.contains_key("access-control-request-method");
                if preflight {
                    let mut resp = local::reply(200, Reason::Preflight, false, None);
                    let mut h: Vec<(String, String)> = c.preflight_headers(&origin);
                    h.retain(|(k, _)| !k.is_empty());
                    for (k, v) in h {
                        mesh_api::l7::HeaderEdit::set_header(&mut Edit(resp.headers_mut()), &k, &v);
                    }
                    return Some((resp, Reason::Preflight));
                }
                applied.cors.extend(c.response_headers(&origin));
            }
            Filter::Fault(fault) => {
                let action = fault.decide(&View { parts }, &mut || {
                    rand::random_range(0..mesh_api::l7::fault::PER_MILLION)
                });
                if let Some(d) = action.delay {
                    tokio::time::sleep(d).await;
                    applied.delayed += d;
                }
                if let Some(a) = action.abort {
                    let resp =
                        local::reply(a.http_status, Reason::FaultAbort, facts.grpc, a.grpc_status);
                    return Some((resp, Reason::FaultAbort));
                }
            }
            Filter::Unresolved { reason } => {
                tracing::warn!(reason, "request hit an unresolvable route filter");
                return Some((
                    local::reply(500, Reason::BadFilter, facts.grpc, None),
                    Reason::BadFilter,
                ));
            }
        }
    }
    None
}

/// Applies the collected response edits.
pub fn apply_response(applied: &Applied<'_>, resp: &mut Response<Body>) {
    let mut edit = Edit(resp.headers_mut());
    for m in &applied.response {
        m.apply(&mut edit);
    }
    for (k, v) in &applied.cors {
        mesh_api::l7::HeaderEdit::set_header(&mut edit, k, v);
    }
}
