//! The per-request pipeline: route selection, filters, backend and endpoint choice, forwarding
//! with retries and timeouts, response edits, then metrics and one access-log record when the
//! response body ends.

mod authorize;
mod backend;
pub mod balance;
pub mod body;
pub mod filters;
mod finish;
pub mod forward;
pub mod local;
pub mod request;
pub mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use mesh_api::l7::{BackendTarget, Destination, Selection, pick_backend};
use mesh_identity::SpiffeId;

use self::backend::Wanted;
use self::body::RequestBody;
use self::filters::{Applied, Facts};
use self::forward::{DEFAULT_CONNECT_RETRIES, Head, Policy};
use self::local::Reason;
use self::request::{View, authority, is_grpc, strip_port};
use crate::access_log::RequestLog;
use crate::metrics::Metrics;
use crate::resolve::{Picked, Target};
use crate::state::State;
use crate::upstream::{Body, Upstreams, Version};

/// Shared by every tunnel.
pub struct Proxy {
    /// Config and routes.
    pub state: Arc<State>,
    /// Upstream connections.
    pub upstreams: Arc<Upstreams>,
    /// Request metrics.
    pub metrics: Metrics,
    /// (namespace, name) of the waypoint's Gateway (policy and route attachment).
    pub gateway: (String, String),
    /// Endpoint choice, connection-pool limits, outlier detection.
    pub balancer: balance::Balancer,
    /// JWT verification and JWKS cache.
    pub authn: crate::authn::Authenticator,
}

/// What one tunnel carries: who sent it and where to.
#[derive(Debug)]
pub struct Downstream {
    /// The client's identity (its mTLS certificate).
    pub peer: SpiffeId,
    /// `peer` as text (`spiffe://...`), for the access log.
    pub peer_text: Arc<str>,
    /// The original client address (`forwarded`, else the peer).
    pub client: SocketAddr,
    /// The CONNECT authority.
    pub authority: SocketAddr,
    /// What the authority is.
    pub target: Target,
    /// Metric series of the tunnel's recent requests (see [`finish`]).
    series: std::sync::Mutex<Vec<finish::CachedSeries>>,
}

impl Downstream {
    /// A tunnel from `peer` (original client `client`) to `authority`, resolved to `target`.
    pub fn new(peer: SpiffeId, client: SocketAddr, authority: SocketAddr, target: Target) -> Self {
        Self {
            peer_text: peer.to_string().into(),
            peer,
            client,
            authority,
            target,
            series: Default::default(),
        }
    }
}

/// Per-request bookkeeping finished when the response body ends.
struct Outcome {
    reason: Option<Reason>,
    endpoint: Option<Picked>,
    error: Option<String>,
    attempts: u32,
}

impl Proxy {
    /// Handles one request of a tunnel.
    pub async fn handle(
        self: Arc<Self>,
        down: Arc<Downstream>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let start = Instant::now();
        let (mut parts, body) = req.into_parts();
        let grpc = is_grpc(&parts.headers);
        let trace = trace::Trace::apply(&mut parts.headers);
        let mut log = RequestLog {
            src_addr: Some(down.client),
            src_identity: Some(down.peer_text.clone()),
            dst_addr: Some(down.authority),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            authority: authority(&parts).unwrap_or_default(),
            protocol: format!("{:?}", parts.version),
            request_id: trace.request_id.clone(),
            trace_id: trace.trace_id.clone(),
            ..RequestLog::default()
        };
        let request_bytes = Arc::new(AtomicU64::new(0));
        let mut outcome = Outcome {
            reason: None,
            endpoint: None,
            error: None,
            attempts: 0,
        };
        let resp = self
            .serve(
                &down,
                &mut parts,
                body,
                grpc,
                &request_bytes,
                &mut outcome,
                &mut log,
            )
            .await;
        self.finish(down, resp, outcome, log, grpc, start, request_bytes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        down: &Downstream,
        parts: &mut Parts,
        body: Incoming,
        grpc: bool,
        request_bytes: &Arc<AtomicU64>,
        out: &mut Outcome,
        log: &mut RequestLog,
    ) -> Response<Body> {
        let local = |status: u16, reason: Reason, out: &mut Outcome| {
            out.reason = Some(reason);
            local::reply(status, reason, grpc, None)
        };
        // Request smuggling: a body framed two ways is refused outright.
        if parts.headers.contains_key(TRANSFER_ENCODING)
            && parts.headers.contains_key(CONTENT_LENGTH)
        {
            out.error = Some("both Transfer-Encoding and Content-Length".into());
            return local(400, Reason::BadRequest, out);
        }
        let mesh = self.state.mesh();
        let routes = self.state.routes();
        let host_full = authority(parts).unwrap_or_default();
        let host = strip_port(&host_full).to_owned();
        let jwt = match self.authenticate(down, parts, &mesh, &routes).await {
            Ok(a) => a,
            Err(reason) => {
                out.error = Some(reason);
                return local(401, Reason::Unauthenticated, out);
            }
        };
        if let Err(reason) = self.authorize(
            down,
            parts,
            &host,
            &mesh,
            &routes,
            jwt.as_ref(),
            &mut log.audit,
        ) {
            out.error = Some(reason);
            return local(403, Reason::Denied, out);
        }
        let (port_dialed, selection) = match &down.target {
            Target::Service {
                namespace,
                name,
                hostname,
                port,
                ..
            } => {
                log.dst_service = Some(hostname.clone());
                let dst = Destination {
                    namespace,
                    name,
                    port: *port,
                    hostname,
                };
                let client_ns = Some(down.peer.namespace.as_str());
                (
                    *port,
                    routes.table.select(&dst, client_ns, &host, &View { parts }),
                )
            }
            Target::Workload { endpoint, .. } => (endpoint.addr.port(), Selection::NoRoute),
        };
        let (rule, matched) = match selection {
            Selection::NotFound => return local(404, Reason::NoRoute, out),
            Selection::NoRoute => (None, None),
            Selection::Matched {
                route,
                rule_index,
                rule,
                matched,
            } => {
                log.route = Some(format!(
                    "{}/{}/{}#{rule_index}",
                    route.kind, route.namespace, route.name
                ));
                (Some(rule), Some(&matched.path))
            }
        };
        let facts = Facts {
            host: &host,
            port: port_dialed,
            matched,
            grpc,
        };
        let mut applied = Applied::default();
        if let Some(rule) = rule
            && let Some((resp, reason)) =
                filters::apply(&rule.filters, parts, facts, &mut applied).await
        {
            out.reason = Some(reason);
            return resp;
        }
        // Backend: the rule's weighted choice, or the destination itself without a route.
        let want = match (rule, &down.target) {
            (Some(rule), _) => {
                let Some(backend) = pick_backend(&rule.backends, rand::random()) else {
                    out.error = Some("the rule has no backend with weight > 0".into());
                    return local(500, Reason::NoBackend, out);
                };
                if let Some((resp, reason)) =
                    filters::apply(&backend.filters, parts, facts, &mut applied).await
                {
                    out.reason = Some(reason);
                    return resp;
                }
                match &backend.target {
                    BackendTarget::Service {
                        namespace,
                        name,
                        port,
                        subset,
                    } => Some(Wanted {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        port: if *port == 0 { port_dialed } else { *port },
                        subset: subset.clone(),
                    }),
                    BackendTarget::Invalid { reason } => {
                        out.error = Some(reason.clone());
                        return local(500, Reason::NoBackend, out);
                    }
                }
            }
            (
                None,
                Target::Service {
                    namespace,
                    name,
                    port,
                    ..
                },
            ) => Some(Wanted {
                namespace: namespace.clone(),
                name: name.clone(),
                port: *port,
                subset: None,
            }),
            (None, Target::Workload { .. }) => None,
        };
        let chosen = match self.choose(&mesh, &routes, down, want) {
            Ok(c) => c,
            Err((status, reason, error)) => {
                out.error = Some(error);
                return local(status, reason, out);
            }
        };
        let backend::Chosen {
            endpoints,
            app_protocol,
            key,
            policy: traffic,
            permit,
        } = chosen;
        let version = upstream_version(parts.version, app_protocol.as_deref());
        let upstream_authority = applied.host.clone().unwrap_or(host_full);
        let head = Head::new(parts, upstream_authority, version);
        let retry = rule.and_then(|r| r.retry.clone());
        let policy = Policy {
            retries: retry
                .as_ref()
                .map_or(DEFAULT_CONNECT_RETRIES, |r| r.attempts),
            codes: retry.as_ref().map(|r| r.codes.clone()).unwrap_or_default(),
            retry: retry.clone(),
            per_try: rule.and_then(|r| r.timeouts.backend_request),
            on_failure: retry.as_ref().is_none_or(|r| r.connect_failure),
        };
        let replay = retry.as_ref().is_some_and(|r| r.attempts > 0) || !applied.mirrors.is_empty();
        let mut req_body = match RequestBody::prepare(body, &parts.headers, replay).await {
            Ok(b) => b,
            Err(e) => {
                out.error = Some(format!("reading the request body failed: {e}"));
                return local(400, Reason::BadRequest, out);
            }
        };
        if !applied.mirrors.is_empty() {
            self.mirror(&mesh, &applied, &head, &req_body, port_dialed);
        }
        let up = forward::Upstream {
            upstreams: &self.upstreams,
            balancer: &self.balancer,
            key: &key,
            policy: &traffic,
        };
        let forwarding = forward::forward(
            &up,
            &endpoints,
            &head,
            &mut req_body,
            &policy,
            request_bytes,
            &mut out.attempts,
        );
        let result = match rule.and_then(|r| r.timeouts.request) {
            Some(t) => tokio::time::timeout(t, forwarding)
                .await
                .unwrap_or_else(|_| {
                    Err(forward::Failed {
                        status: 504,
                        reason: Reason::Timeout,
                        error: format!("no response within the request timeout {t:?}"),
                    })
                }),
            None => forwarding.await,
        };
        // The connection-pool slot is held until the response head (or the failure) is back.
        drop(permit);
        match result {
            Ok(f) => {
                out.endpoint = Some(f.endpoint);
                let mut resp = forward::boxed(f.response);
                filters::apply_response(&applied, &mut resp);
                if !applied.delayed.is_zero() {
                    out.reason.get_or_insert(Reason::FaultDelay);
                }
                resp
            }
            Err(f) => {
                out.error = Some(f.error);
                local(f.status, f.reason, out)
            }
        }
    }
}

/// The HTTP version to speak upstream: HTTP/2 when the client spoke it or the port declares an
/// HTTP/2 protocol (gRPC, h2c), else HTTP/1.1.
fn upstream_version(downstream: http::Version, app_protocol: Option<&str>) -> Version {
    let h2_port = app_protocol.is_some_and(|p| {
        matches!(
            p.to_ascii_lowercase().as_str(),
            "http2" | "h2c" | "grpc" | "kubernetes.io/h2c"
        )
    });
    if downstream == http::Version::HTTP_2 || h2_port {
        Version::Http2
    } else {
        Version::Http1
    }
}
