//! DestinationRule: subsets (endpoint labels), load balancer, connection-pool limits and outlier
//! detection, validated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::service_of_host;
use super::spec::{DestinationRuleObject, TrafficPolicySpec};
use crate::l7::duration::parse_duration;
use crate::model::FieldError;

/// Endpoint choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum LoadBalancer {
    /// In turn.
    RoundRobin,
    /// The less busy of two random endpoints (Envoy's default).
    #[default]
    LeastRequest,
    /// At random.
    Random,
}

/// Outlier detection: endpoints answering 5xx repeatedly are ejected for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outlier {
    /// 5xx answers in a row before ejection (`None` = not checked).
    pub consecutive_5xx: Option<u32>,
    /// 502/503/504 in a row before ejection.
    pub consecutive_gateway: Option<u32>,
    /// Ejection time, multiplied by how often the endpoint was ejected.
    pub base_ejection: Duration,
    /// At most this share of endpoints ejected at once, percent.
    pub max_ejection_percent: u32,
}

/// A traffic policy (rule-wide, or merged into a subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Endpoint choice.
    pub load_balancer: LoadBalancer,
    /// Requests in flight to the service at most (`maxConnections` + `http1MaxPendingRequests`,
    /// or `http2MaxRequests`); more are answered 503 (overflow).
    pub max_in_flight: Option<u32>,
    /// Requests per upstream connection (1 = a new connection per request).
    pub max_requests_per_connection: Option<u32>,
    /// Outlier detection.
    pub outlier: Option<Outlier>,
}

/// A subset of the service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subset {
    /// Name.
    pub name: String,
    /// Labels every endpoint of the subset has.
    pub labels: BTreeMap<String, String>,
    /// Its policy (the rule's, overridden by the subset's own).
    pub policy: TrafficPolicy,
}

/// A validated DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// The service (namespace, name).
    pub service: (String, String),
    /// Policy for the whole service.
    pub policy: TrafficPolicy,
    /// Subsets.
    pub subsets: Vec<Subset>,
}

impl DestinationRule {
    /// The subset `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

fn policy(
    spec: Option<&TrafficPolicySpec>,
    base: &TrafficPolicy,
) -> Result<TrafficPolicy, FieldError> {
    let mut p = base.clone();
    let Some(spec) = spec else { return Ok(p) };
    if let Some(lb) = &spec.load_balancer {
        if lb.consistent_hash.is_some() {
            return Err(FieldError::new(
                "loadBalancer.consistentHash",
                "consistent hashing is not supported by this waypoint (use simple)",
            ));
        }
        if lb.locality_lb_setting.is_some() {
            return Err(FieldError::new(
                "loadBalancer.localityLbSetting",
                "locality load balancing is not supported by this waypoint",
            ));
        }
    }
    match spec.tls.as_ref().and_then(|t| t.mode.as_deref()) {
        // ISTIO_MUTUAL is what the waypoint does to mesh endpoints (HBONE); endpoints outside
        // the mesh get plaintext, which is DISABLE.
        None | Some("ISTIO_MUTUAL" | "DISABLE") => {}
        Some(other) => {
            return Err(FieldError::new(
                "tls.mode",
                format!(
                    "{other:?} is not supported: the waypoint speaks HBONE (ISTIO_MUTUAL) to mesh \
                     endpoints and plaintext (DISABLE) to others; SIMPLE and MUTUAL origination \
                     is not implemented"
                ),
            ));
        }
    }
    if let Some(lb) = spec
        .load_balancer
        .as_ref()
        .and_then(|l| l.simple.as_deref())
    {
        p.load_balancer = match lb {
            "ROUND_ROBIN" => LoadBalancer::RoundRobin,
            "LEAST_REQUEST" | "LEAST_CONN" | "UNSPECIFIED" => LoadBalancer::LeastRequest,
            "RANDOM" | "PASSTHROUGH" => LoadBalancer::Random,
            other => {
                return Err(FieldError::new(
                    "loadBalancer.simple",
                    format!("{other:?} is not ROUND_ROBIN, LEAST_REQUEST or RANDOM"),
                ));
            }
        };
    }
    if let Some(cp) = &spec.connection_pool {
        let conns = cp.tcp.as_ref().and_then(|t| t.max_connections);
        let http = cp.http.as_ref();
        let pending = http.and_then(|h| h.http1_max_pending_requests);
        let h2 = http.and_then(|h| h.http2_max_requests);
        p.max_in_flight = match (conns, pending, h2) {
            (None, None, None) => p.max_in_flight,
            (c, pe, None) => Some(c.unwrap_or(1024).saturating_add(pe.unwrap_or(1024))),
            (_, _, Some(m)) => Some(m),
        };
        if let Some(m) = http.and_then(|h| h.max_requests_per_connection) {
            p.max_requests_per_connection = Some(m);
        }
    }
    if let Some(o) = &spec.outlier_detection {
        let d = |v: &Option<String>, f: &str, default: u64| {
            v.as_deref()
                .map(|s| {
                    parse_duration(s)
                        .map_err(|e| FieldError::new(format!("outlierDetection.{f}"), e))
                })
                .transpose()
                .map(|d| d.unwrap_or(Duration::from_secs(default)))
        };
        let _interval = d(&o.interval, "interval", 10)?;
        p.outlier = Some(Outlier {
            consecutive_5xx: o.consecutive5xx_errors.or(
                if o.consecutive_gateway_errors.is_none() {
                    Some(5)
                } else {
                    None
                },
            ),
            consecutive_gateway: o.consecutive_gateway_errors,
            base_ejection: d(&o.base_ejection_time, "baseEjectionTime", 30)?,
            max_ejection_percent: o.max_ejection_percent.unwrap_or(10).min(100),
        });
    }
    Ok(p)
}

/// Validates a DestinationRule.
pub fn destination_rule(obj: &DestinationRuleObject) -> Result<DestinationRule, FieldError> {
    let ns = obj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let service =
        service_of_host(&obj.spec.host, &ns).map_err(|e| FieldError::new("spec.host", e))?;
    let base = policy(obj.spec.traffic_policy.as_ref(), &TrafficPolicy::default())
        .map_err(|e| e.under("spec.trafficPolicy"))?;
    let mut subsets = Vec::new();
    for (i, s) in obj.spec.subsets.iter().enumerate() {
        if subsets.iter().any(|x: &Subset| x.name == s.name) {
            return Err(FieldError::new(
                format!("spec.subsets[{i}].name"),
                format!("subset {:?} is listed twice", s.name),
            ));
        }
        subsets.push(Subset {
            name: s.name.clone(),
            labels: s.labels.clone(),
            policy: policy(s.traffic_policy.as_ref(), &base)
                .map_err(|e| e.under(&format!("spec.subsets[{i}].trafficPolicy")))?,
        });
    }
    Ok(DestinationRule {
        namespace: ns,
        name: obj.metadata.name.clone(),
        service,
        policy: base,
        subsets,
    })
}
