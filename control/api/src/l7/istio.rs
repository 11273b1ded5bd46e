//! Istio routing on the waypoint: VirtualService `http` routes become [`Route`]s of kind
//! `VirtualService` (rules in order, first match wins; used for a service without Gateway API
//! routes), and DestinationRules become [`DestinationRule`]s (subsets, load balancer, connection
//! limits, outlier detection).

mod dr;
pub mod spec;

use super::convert::check_header_name;
use super::duration::parse_duration;
use super::fault::{Abort, Fault, PER_MILLION, percent_to_per_million};
use super::pattern::{Pattern, ValueMatch};
use super::route::{
    Backend, BackendTarget, Filter, HeaderModifier, Mirror, NamedMatch, Parent, PathMatch,
    PathModifier, Redirect, Retry, Route, RouteKind, RouteMatch, Rule, Timeouts, UrlRewrite,
};
use crate::model::FieldError;

pub use dr::{DestinationRule, LoadBalancer, Outlier, Subset, TrafficPolicy, destination_rule};
use spec::{
    HeaderOpsSpec, HeadersSpec, HttpRouteSpec, MatchSpec, RetriesSpec, StringMatchSpec,
    VirtualServiceObject,
};

/// The service a host of a VirtualService or DestinationRule names, as (namespace, name):
/// `name` (in `ns`), `name.namespace`, or `name.namespace.svc[.cluster.local]`.
pub fn service_of_host(host: &str, ns: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => Ok((ns.to_owned(), (*name).to_owned())),
        [name, namespace] | [name, namespace, "svc", ..] => {
            Ok(((*namespace).to_owned(), (*name).to_owned()))
        }
        _ => Err(format!(
            "host {host:?} is not a service of this mesh (use name, name.namespace or the FQDN)"
        )),
    }
}

fn value_match(m: &StringMatchSpec, field: &str) -> Result<ValueMatch, FieldError> {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(e), None, None) => Ok(ValueMatch::Exact(e.clone())),
        (None, Some(p), None) => Ok(ValueMatch::Prefix(p.clone())),
        (None, None, Some(r)) => Pattern::new(r)
            .map(ValueMatch::RegularExpression)
            .map_err(|e| FieldError::new(field, e)),
        _ => Err(FieldError::new(
            field,
            "set exactly one of exact, prefix, regex",
        )),
    }
}

fn route_match(m: &MatchSpec) -> Result<RouteMatch, FieldError> {
    let path = match &m.uri {
        None => PathMatch::Prefix("/".into()),
        Some(u) => match value_match(u, "uri")? {
            ValueMatch::Exact(p) => PathMatch::Exact(p),
            ValueMatch::Prefix(p) => PathMatch::RawPrefix(p),
            ValueMatch::RegularExpression(r) => PathMatch::Regex(r),
        },
    };
    let mut headers = Vec::new();
    for (name, v) in &m.headers {
        let field = format!("headers.{name}");
        check_header_name(name).map_err(|e| FieldError::new(&field, e))?;
        headers.push(NamedMatch {
            name: name.to_ascii_lowercase(),
            value: value_match(v, &field)?,
        });
    }
    let mut query_params = Vec::new();
    for (name, v) in &m.query_params {
        query_params.push(NamedMatch {
            name: name.clone(),
            value: value_match(v, &format!("queryParams.{name}"))?,
        });
    }
    let method = match &m.method {
        None => None,
        Some(mm) => match value_match(mm, "method")? {
            ValueMatch::Exact(e) => Some(e),
            _ => {
                return Err(FieldError::new(
                    "method",
                    "only exact method matches are supported",
                ));
            }
        },
    };
    Ok(RouteMatch {
        path,
        headers,
        query_params,
        method,
    })
}

fn header_ops(ops: &HeaderOpsSpec, field: &str) -> Result<HeaderModifier, FieldError> {
    let lower = |m: &std::collections::BTreeMap<String, String>| -> Result<Vec<(String, String)>, FieldError> {
        m.iter()
            .map(|(k, v)| {
                check_header_name(k).map_err(|e| FieldError::new(field, e))?;
                super::convert::check_header_value(v).map_err(|e| FieldError::new(field, e))?;
                Ok((k.to_ascii_lowercase(), v.clone()))
            })
            .collect()
    };
    Ok(HeaderModifier {
        set: lower(&ops.set)?,
        add: lower(&ops.add)?,
        remove: ops.remove.iter().map(|r| r.to_ascii_lowercase()).collect(),
    })
}

fn header_filters(h: &HeadersSpec, field: &str) -> Result<Vec<Filter>, FieldError> {
    let mut out = Vec::new();
    if let Some(r) = &h.request {
        out.push(Filter::RequestHeaderModifier(header_ops(
            r,
            &format!("{field}.request"),
        )?));
    }
    if let Some(r) = &h.response {
        out.push(Filter::ResponseHeaderModifier(header_ops(
            r,
            &format!("{field}.response"),
        )?));
    }
    Ok(out)
}

/// Istio `retryOn` and `attempts` as a [`Retry`].
fn retry(r: &RetriesSpec) -> Result<Retry, FieldError> {
    let mut codes: Vec<u16> = Vec::new();
    let mut connect_failure = false;
    let on = r
        .retry_on
        .as_deref()
        .unwrap_or("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes");
    for cond in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match cond {
            "5xx" => codes.extend(500..=599),
            "gateway-error" => codes.extend([502, 503, 504]),
            "connect-failure" | "refused-stream" | "reset" | "unavailable" | "cancelled" => {
                connect_failure = true
            }
            "retriable-status-codes" => codes.push(503),
            "retriable-4xx" => codes.push(409),
            other => match other.parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => codes.push(c),
                _ => {
                    return Err(FieldError::new(
                        "retryOn",
                        format!("{other:?} is not a retry condition"),
                    ));
                }
            },
        }
    }
    codes.sort_unstable();
    codes.dedup();
    Ok(Retry {
        attempts: r.attempts.unwrap_or(2),
        codes,
        connect_failure,
        backoff: None,
    })
}

fn fault(f: &spec::FaultSpec) -> Result<Fault, FieldError> {
    let share = |p: &Option<spec::PercentSpec>, field: &str| {
        percent_to_per_million(p.as_ref().map_or(100.0, |p| p.value), field)
    };
    let delay = match &f.delay {
        Some(d) => {
            let t = d
                .fixed_delay
                .as_deref()
                .ok_or_else(|| FieldError::new("delay.fixedDelay", "required"))?;
            Some((
                parse_duration(t).map_err(|e| FieldError::new("delay.fixedDelay", e))?,
                share(&d.percentage, "delay.percentage")?,
            ))
        }
        None => None,
    };
    let abort = match &f.abort {
        Some(a) => Some(Abort {
            http_status: a
                .http_status
                .unwrap_or(if a.grpc_status.is_some() { 200 } else { 500 }),
            grpc_status: a.grpc_status.as_ref().map(grpc_code).transpose()?,
            per_million: share(&a.percentage, "abort.percentage")?,
        }),
        None => None,
    };
    if delay.is_none() && abort.is_none() {
        return Err(FieldError::new("", "a fault needs a delay or an abort"));
    }
    Ok(Fault {
        delay,
        abort,
        headers: Vec::new(),
    })
}

fn grpc_code(v: &serde_json::Value) -> Result<u32, FieldError> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => NAMES
            .iter()
            .position(|n| n == s)
            .and_then(|i| u32::try_from(i).ok()),
        _ => None,
    };
    n.filter(|n| *n <= 16)
        .ok_or_else(|| FieldError::new("abort.grpcStatus", format!("{v} is not a gRPC status")))
}

fn rule(h: &HttpRouteSpec, ns: &str) -> Result<Rule, FieldError> {
    let mut matches = Vec::new();
    for (i, m) in h.matches.iter().enumerate() {
        matches.push(route_match(m).map_err(|e| e.under(&format!("match[{i}]")))?);
    }
    if matches.is_empty() {
        matches.push(RouteMatch::any());
    }
    if h.delegate.is_some() {
        return Err(FieldError::new(
            "delegate",
            "delegation to another VirtualService is not supported by this waypoint",
        ));
    }
    let mut filters = Vec::new();
    // CORS first: a preflight is answered before faults and routing, as Envoy's filter does.
    if let Some(c) = &h.cors_policy {
        filters.push(Filter::Cors(cors(c).map_err(|e| e.under("corsPolicy"))?));
    }
    if let Some(f) = &h.fault {
        filters.push(Filter::Fault(fault(f).map_err(|e| e.under("fault"))?));
    }
    if let Some(hd) = &h.headers {
        filters.extend(header_filters(hd, "headers")?);
    }
    if let Some(r) = &h.redirect {
        let port = r
            .port
            .map(|p| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| FieldError::new("redirect.port", "not a port"))
            })
            .transpose()?;
        let status = r.redirect_code.unwrap_or(301);
        if !(300..=399).contains(&status) {
            return Err(FieldError::new(
                "redirect.redirectCode",
                format!("{status} is not a 3xx status"),
            ));
        }
        filters.push(Filter::RequestRedirect(Redirect {
            scheme: r.scheme.clone(),
            hostname: r.authority.clone(),
            path: r.uri.clone().map(PathModifier::ReplaceFullPath),
            port,
            status,
        }));
    }
    if let Some(rw) = &h.rewrite {
        let prefix_match = matches
            .iter()
            .all(|m| matches!(m.path, PathMatch::RawPrefix(_) | PathMatch::Prefix(_)));
        let path = rw.uri.clone().map(|u| {
            if prefix_match {
                PathModifier::ReplacePrefixMatch(u.trim_end_matches('/').to_owned())
            } else {
                PathModifier::ReplaceFullPath(u)
            }
        });
        filters.push(Filter::UrlRewrite(UrlRewrite {
            hostname: rw.authority.clone(),
            path,
        }));
    }
    if let Some(m) = &h.mirror {
        let (mns, mname) =
            service_of_host(&m.host, ns).map_err(|e| FieldError::new("mirror.host", e))?;
        let per_million = match &h.mirror_percentage {
            Some(p) => percent_to_per_million(p.value, "mirrorPercentage")?,
            None => PER_MILLION,
        };
        let port = m
            .port
            .as_ref()
            .map_or(0, |p| u16::try_from(p.number).unwrap_or(0));
        filters.push(Filter::RequestMirror(Mirror {
            backend: BackendTarget::Service {
                namespace: mns,
                name: mname,
                port,
                subset: m.subset.clone(),
            },
            per_million,
        }));
    }
    let mut backends = Vec::new();
    for (i, d) in h.route.iter().enumerate() {
        let field = format!("route[{i}]");
        let (dns, dname) = service_of_host(&d.destination.host, ns)
            .map_err(|e| FieldError::new(format!("{field}.destination.host"), e))?;
        let port = match &d.destination.port {
            Some(p) => u16::try_from(p.number)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    FieldError::new(format!("{field}.destination.port"), "not a port")
                })?,
            None => 0,
        };
        let filters = match &d.headers {
            Some(hd) => header_filters(hd, &format!("{field}.headers"))?,
            None => Vec::new(),
        };
        // One destination gets everything; several without weights share equally.
        let unweighted = h.route.iter().all(|d| d.weight.is_none());
        let weight = d.weight.unwrap_or(if unweighted { 100 } else { 0 });
        backends.push(Backend {
            target: BackendTarget::Service {
                namespace: dns,
                name: dname,
                port,
                subset: d.destination.subset.clone(),
            },
            weight,
            filters,
        });
    }
    if backends.is_empty() && h.redirect.is_none() {
        return Err(FieldError::new(
            "route",
            "a route needs destinations or a redirect",
        ));
    }
    let timeout = h
        .timeout
        .as_deref()
        .map(|t| parse_duration(t).map_err(|e| FieldError::new("timeout", e)))
        .transpose()?;
    let retry = h
        .retries
        .as_ref()
        .map(retry)
        .transpose()
        .map_err(|e| e.under("retries"))?;
    let per_try = h
        .retries
        .as_ref()
        .and_then(|r| r.per_try_timeout.as_deref())
        .map(|t| parse_duration(t).map_err(|e| FieldError::new("retries.perTryTimeout", e)))
        .transpose()?;
    Ok(Rule {
        name: h.name.clone(),
        matches,
        filters,
        backends,
        timeouts: Timeouts {
            request: timeout.filter(|t| !t.is_zero()),
            backend_request: per_try,
        },
        retry,
    })
}

/// Istio's `corsPolicy` as the Gateway API CORS filter (exact origins only).
fn cors(c: &spec::CorsPolicySpec) -> Result<crate::l7::cors::Cors, FieldError> {
    let mut origins = c.allow_origin.clone();
    for (i, o) in c.allow_origins.iter().enumerate() {
        match (&o.exact, &o.prefix, &o.regex) {
            (Some(e), None, None) => origins.push(e.clone()),
            _ => {
                return Err(FieldError::new(
                    format!("allowOrigins[{i}]"),
                    "only exact origins are supported (prefix and regex are not)",
                ));
            }
        }
    }
    let max_age = match &c.max_age {
        Some(t) => {
            let d =
                crate::l7::duration::parse_duration(t).map_err(|e| FieldError::new("maxAge", e))?;
            Some(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        }
        None => None,
    };
    let spec = crate::l7::spec::CorsSpec {
        allow_origins: origins,
        allow_credentials: c.allow_credentials,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age,
    };
    crate::l7::cors::Cors::from_spec(&spec).map_err(|m| FieldError::new("allowOrigins", m))
}

/// Validates a VirtualService into a route of kind `VirtualService`.
pub fn virtual_service(obj: &VirtualServiceObject) -> Result<Route, FieldError> {
    let ns = obj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut parents = Vec::new();
    for (i, h) in obj.spec.hosts.iter().enumerate() {
        let (sns, sname) =
            service_of_host(h, &ns).map_err(|e| FieldError::new(format!("spec.hosts[{i}]"), e))?;
        parents.push(Parent::Service {
            namespace: sns,
            name: sname,
            port: None,
        });
    }
    if parents.is_empty() {
        return Err(FieldError::new(
            "spec.hosts",
            "at least one host is required",
        ));
    }
    for (field, present) in [
        ("spec.tcp", !obj.spec.tcp.is_empty()),
        ("spec.tls", !obj.spec.tls.is_empty()),
    ] {
        if present {
            return Err(FieldError::new(
                field,
                "only http routes are supported by this waypoint (use a Service with \
                 appProtocol tcp: the waypoint relays its connections to the service's endpoints)",
            ));
        }
    }
    let mut rules = Vec::new();
    for (i, h) in obj.spec.http.iter().enumerate() {
        rules.push(rule(h, &ns).map_err(|e| e.under(&format!("spec.http[{i}]")))?);
    }
    Ok(Route {
        kind: RouteKind::VirtualService,
        namespace: ns,
        name: obj.metadata.name.clone(),
        created: obj.metadata.creation_timestamp.clone(),
        parents,
        hostnames: Vec::new(),
        rules,
    })
}

#[cfg(test)]
#[path = "istio/tests.rs"]
mod tests;
