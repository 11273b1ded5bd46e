//! From a backend (service, port, subset) to endpoints: DestinationRule subsets and traffic
//! policy, connection-pool admission; and mirrors (copies of buffered requests, fire and forget).

use mesh_api::l7::BackendTarget;
use mesh_api::l7::istio::TrafficPolicy;

use super::balance::Permit;
use super::body::RequestBody;
use super::filters::Applied;
use super::forward::Head;
use super::local::{self, Reason};
use super::request::strip_port;
use super::{Downstream, Proxy};
use crate::resolve::{self, Picked, Target};
use crate::state::{Mesh, Routes};

/// A backend service port, possibly a subset; `port` 0 = the port the client dialed.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Service port.
    pub port: u16,
    /// DestinationRule subset.
    pub subset: Option<String>,
}

/// Endpoints to send to and the rules that govern it.
pub struct Chosen {
    /// Candidates (not empty).
    pub endpoints: Vec<Picked>,
    /// `appProtocol` of the service port.
    pub app_protocol: Option<String>,
    /// Balancer key (`ns/name[/subset]`).
    pub key: String,
    /// DestinationRule policy in force.
    pub policy: TrafficPolicy,
    /// Held while the request is in flight (connection-pool limit).
    pub permit: Permit,
}

/// Why no endpoint can be used: status, reason, detail.
pub type Refusal = (u16, Reason, String);

impl Proxy {
    /// Resolves `want` (or the addressed workload, `None`) and admits the request.
    pub(super) fn choose(
        &self,
        mesh: &Mesh,
        routes: &Routes,
        down: &Downstream,
        want: Option<Wanted>,
    ) -> Result<Chosen, Refusal> {
        let Some(w) = want else {
            let Target::Workload {
                endpoint,
                name,
                namespace,
            } = &down.target
            else {
                return Err((500, Reason::NoBackend, "no backend".into()));
            };
            let picked = Picked {
                endpoint: endpoint.clone(),
                workload: name.clone(),
                namespace: namespace.clone(),
            };
            return Ok(Chosen {
                endpoints: vec![picked],
                app_protocol: None,
                key: format!("{namespace}/{name}"),
                policy: TrafficPolicy::default(),
                permit: self.balancer.admit("", None).ok_or((
                    503,
                    Reason::Overflow,
                    String::new(),
                ))?,
            });
        };
        let dr = routes
            .destination_rules
            .get(&(w.namespace.clone(), w.name.clone()));
        let (labels, policy) = match (dr, &w.subset) {
            (Some(dr), Some(s)) => match dr.subset(s) {
                Some(ss) => (Some(&ss.labels), ss.policy.clone()),
                None => {
                    return Err((
                        503,
                        Reason::NoHealthyUpstream,
                        format!(
                            "subset {s} is not defined by DestinationRule {}/{}",
                            dr.namespace, dr.name
                        ),
                    ));
                }
            },
            (Some(dr), None) => (None, dr.policy.clone()),
            (None, Some(s)) => {
                return Err((
                    503,
                    Reason::NoHealthyUpstream,
                    format!(
                        "subset {s} of {}/{} has no DestinationRule",
                        w.namespace, w.name
                    ),
                ));
            }
            (None, None) => (None, TrafficPolicy::default()),
        };
        let (svc, endpoints) = resolve::endpoints(mesh, &w.namespace, &w.name, w.port, labels)
            .map_err(|e| (500, Reason::NoBackend, e.to_string()))?;
        if endpoints.is_empty() {
            return Err((
                503,
                Reason::NoHealthyUpstream,
                format!("service {}/{} has no endpoint", w.namespace, w.name),
            ));
        }
        let key = match &w.subset {
            Some(s) => format!("{}/{}/{s}", w.namespace, w.name),
            None => format!("{}/{}", w.namespace, w.name),
        };
        let permit = self
            .balancer
            .admit(&key, policy.max_in_flight)
            .ok_or_else(|| {
                (
                    503,
                    Reason::Overflow,
                    format!(
                        "connection pool of {key} is full ({:?} in flight)",
                        policy.max_in_flight
                    ),
                )
            })?;
        Ok(Chosen {
            endpoints,
            app_protocol: svc.port(w.port).and_then(|p| p.app_protocol.clone()),
            key,
            policy,
            permit,
        })
    }

    /// Sends copies of a buffered request to the mirrors (fire and forget).
    pub(super) fn mirror(
        &self,
        mesh: &Mesh,
        applied: &Applied<'_>,
        head: &Head,
        body: &RequestBody,
        dialed: u16,
    ) {
        let Some(bytes) = body.bytes() else {
            tracing::debug!("request body is streamed; not mirrored");
            return;
        };
        for m in &applied.mirrors {
            if rand::random_range(0..mesh_api::l7::fault::PER_MILLION) >= m.per_million {
                continue;
            }
            let BackendTarget::Service {
                namespace,
                name,
                port,
                ..
            } = &m.backend
            else {
                continue;
            };
            let port = if *port == 0 { dialed } else { *port };
            let Ok((_, eps)) = resolve::endpoints(mesh, namespace, name, port, None) else {
                continue;
            };
            let Some(ep) = eps.get(rand::random_range(0..eps.len().max(1))).cloned() else {
                continue;
            };
            let mut h = head.clone();
            h.authority = format!("{}-shadow", strip_port(&h.authority));
            let Ok(req) = h.request(local::full(bytes.clone())) else {
                continue;
            };
            let up = self.upstreams.clone();
            tokio::spawn(async move {
                if let Err(e) = up.send(&ep.endpoint, h.version, req, true).await {
                    tracing::debug!(error = %e, "mirrored request failed");
                }
            });
        }
    }
}
