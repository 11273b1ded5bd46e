//! Validation of filters, backends, timeouts and retries.

use super::{ConvertContext, check_header_name, trim_slash};
use crate::l7::cors::Cors;
use crate::l7::duration::parse_duration;
use crate::l7::fault::{FAULT_GROUP, FAULT_KIND, PER_MILLION};
use crate::l7::grants::Grants;
use crate::l7::route::{
    Backend, BackendTarget, Filter, HeaderModifier, Mirror, Parent, PathMatch, PathModifier,
    Redirect, Retry, RouteKind, RouteMatch, Timeouts, UrlRewrite,
};
use crate::l7::spec::{
    BackendRefSpec, HeaderModifierSpec, HttpFilterSpec, PathModifierSpec, RetrySpec, TimeoutsSpec,
};
use crate::model::{FieldError, names};

/// Largest backend weight (Gateway API limit).
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Retries a rule gets when its `retry` names no `attempts`.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 1;

/// Checks a header value: visible characters, spaces and tabs only (no CR, LF or NUL).
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "{value:?} is not a valid header value (control characters)"
        ));
    }
    Ok(())
}

fn header_modifier(spec: &HeaderModifierSpec) -> Result<HeaderModifier, FieldError> {
    let mut out = HeaderModifier::default();
    for (list, into, what) in [
        (&spec.set, &mut out.set, "set"),
        (&spec.add, &mut out.add, "add"),
    ] {
        for (i, h) in list.iter().enumerate() {
            let field = format!("{what}[{i}]");
            check_header_name(&h.name).map_err(|m| FieldError::new(&field, m))?;
            check_header_value(&h.value).map_err(|m| FieldError::new(&field, m))?;
            let name = h.name.to_ascii_lowercase();
            if into.iter().any(|(n, _): &(String, String)| *n == name) {
                return Err(FieldError::new(
                    field,
                    format!("header {:?} is listed twice", h.name),
                ));
            }
            into.push((name, h.value.clone()));
        }
    }
    for (i, n) in spec.remove.iter().enumerate() {
        check_header_name(n).map_err(|m| FieldError::new(format!("remove[{i}]"), m))?;
        let name = n.to_ascii_lowercase();
        if !out.remove.contains(&name) {
            out.remove.push(name);
        }
    }
    Ok(out)
}

fn path_modifier(
    spec: &PathModifierSpec,
    matches: &[RouteMatch],
) -> Result<PathModifier, FieldError> {
    let check = |p: &str| {
        if p.starts_with('/') {
            Ok(())
        } else {
            Err(format!("{p:?} must start with '/'"))
        }
    };
    match spec.kind.as_str() {
        "ReplaceFullPath" => {
            let p = spec.replace_full_path.as_deref().ok_or_else(|| {
                FieldError::new("replaceFullPath", "required for type ReplaceFullPath")
            })?;
            check(p).map_err(|m| FieldError::new("replaceFullPath", m))?;
            Ok(PathModifier::ReplaceFullPath(p.to_owned()))
        }
        "ReplacePrefixMatch" => {
            let p = spec.replace_prefix_match.as_deref().ok_or_else(|| {
                FieldError::new("replacePrefixMatch", "required for type ReplacePrefixMatch")
            })?;
            check(p).map_err(|m| FieldError::new("replacePrefixMatch", m))?;
            if !matches
                .iter()
                .all(|m| matches!(m.path, PathMatch::Prefix(_)))
            {
                return Err(FieldError::new(
                    "replacePrefixMatch",
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
                ));
            }
            let t = trim_slash(p);
            Ok(PathModifier::ReplacePrefixMatch(if t == "/" {
                String::new()
            } else {
                t
            }))
        }
        other => Err(FieldError::new(
            "type",
            format!("{other:?} is not ReplaceFullPath or ReplacePrefixMatch"),
        )),
    }
}

fn hostname(h: &str, field: &str) -> Result<String, FieldError> {
    names::dns_subdomain(&h.to_ascii_lowercase()).map_err(|m| FieldError::new(field, m))?;
    Ok(h.to_ascii_lowercase())
}

fn port(p: u32, field: &str) -> Result<u16, FieldError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FieldError::new(field, format!("{p} is not a port (1..=65535)")))
}

fn redirect(
    spec: &crate::l7::spec::RedirectSpec,
    matches: &[RouteMatch],
) -> Result<Redirect, FieldError> {
    let scheme = match spec.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(s) => {
            return Err(FieldError::new(
                "scheme",
                format!("{s:?} is not http or https"),
            ));
        }
    };
    let status = spec.status_code.unwrap_or(302);
    if ![301, 302, 303, 307, 308].contains(&status) {
        return Err(FieldError::new(
            "statusCode",
            format!("{status} is not a redirect status (301, 302, 303, 307, 308)"),
        ));
    }
    Ok(Redirect {
        scheme,
        hostname: spec
            .hostname
            .as_deref()
            .map(|h| hostname(h, "hostname"))
            .transpose()?,
        path: spec
            .path
            .as_ref()
            .map(|p| path_modifier(p, matches).map_err(|e| e.under("path")))
            .transpose()?,
        port: spec.port.map(|p| port(p, "port")).transpose()?,
        status,
    })
}

/// The route being converted: what its references are resolved against.
pub(super) struct Referrer<'a> {
    /// Its kind (grants are per kind).
    pub kind: RouteKind,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its parents.
    pub parents: &'a [Parent],
    /// Faults and grants.
    pub ctx: &'a ConvertContext,
}

impl Referrer<'_> {
    /// Whether the route may send to Service `namespace/name`: one of its own namespace; one of
    /// its Service parents (a consumer route sends the traffic it overrides where it was going
    /// anyway, which is how GAMMA consumer routes are written); otherwise only with a grant.
    fn may_refer(&self, namespace: &str, name: &str) -> bool {
        let parent = |p: &Parent| {
            matches!(p, Parent::Service { namespace: pns, name: pname, .. }
                if pns == namespace && pname == name)
        };
        self.parents.iter().any(parent)
            || self
                .ctx
                .grants
                .permits(self.kind, self.namespace, namespace, name)
    }
}

/// Validates `filters`. `rule_level` = false for backend-level filters (no redirect, no CORS).
pub(super) fn filters(
    specs: &[HttpFilterSpec],
    matches: &[RouteMatch],
    from: &Referrer<'_>,
    rule_level: bool,
) -> Result<Vec<Filter>, FieldError> {
    let (route_ns, ctx) = (from.namespace, from.ctx);
    let mut out: Vec<Filter> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in specs.iter().enumerate() {
        let at = |e: FieldError| e.under(&format!("[{i}]"));
        let missing = |field: &str| {
            FieldError::new(
                format!("[{i}].{field}"),
                format!("required for a filter of type {}", f.kind),
            )
        };
        let once = !matches!(f.kind.as_str(), "RequestMirror" | "ExtensionRef");
        if once && seen.contains(&f.kind.as_str()) {
            return Err(FieldError::new(
                format!("[{i}].type"),
                format!("{} may appear only once", f.kind),
            ));
        }
        seen.push(&f.kind);
        let filter = match f.kind.as_str() {
            "RequestHeaderModifier" => {
                let s = f
                    .request_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("requestHeaderModifier"))?;
                Filter::RequestHeaderModifier(
                    header_modifier(s).map_err(|e| at(e.under("requestHeaderModifier")))?,
                )
            }
            "ResponseHeaderModifier" => {
                let s = f
                    .response_header_modifier
                    .as_ref()
                    .ok_or_else(|| missing("responseHeaderModifier"))?;
                Filter::ResponseHeaderModifier(
                    header_modifier(s).map_err(|e| at(e.under("responseHeaderModifier")))?,
                )
            }
            "RequestRedirect" if rule_level => {
                let s = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?;
                Filter::RequestRedirect(
                    redirect(s, matches).map_err(|e| at(e.under("requestRedirect")))?,
                )
            }
            "URLRewrite" => {
                let s = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?;
                let rw = UrlRewrite {
                    hostname: s
                        .hostname
                        .as_deref()
                        .map(|h| hostname(h, "hostname"))
                        .transpose()
                        .map_err(|e| at(e.under("urlRewrite")))?,
                    path: s
                        .path
                        .as_ref()
                        .map(|p| path_modifier(p, matches))
                        .transpose()
                        .map_err(|e| at(e.under("urlRewrite.path")))?,
                };
                Filter::UrlRewrite(rw)
            }
            "RequestMirror" => {
                let s = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("requestMirror"))?;
                let per_million = match (&s.percent, &s.fraction) {
                    (Some(_), Some(_)) => {
                        return Err(FieldError::new(
                            format!("[{i}].requestMirror"),
                            "set percent or fraction, not both",
                        ));
                    }
                    (Some(p), None) if *p <= 100 => p * 10_000,
                    (Some(p), None) => {
                        return Err(FieldError::new(
                            format!("[{i}].requestMirror.percent"),
                            format!("{p} is not 0..=100"),
                        ));
                    }
                    (None, Some(fr)) => {
                        let den = fr.denominator.unwrap_or(100);
                        if den == 0 || fr.numerator > den {
                            return Err(FieldError::new(
                                format!("[{i}].requestMirror.fraction"),
                                "need 0 <= numerator <= denominator, denominator > 0",
                            ));
                        }
                        // numerator <= denominator: the result is at most PER_MILLION.
                        (u64::from(fr.numerator) * u64::from(PER_MILLION) / u64::from(den)) as u32
                    }
                    (None, None) => PER_MILLION,
                };
                let target = backend_target(&s.backend_ref, route_ns);
                if let BackendTarget::Invalid { reason } = &target {
                    return Err(FieldError::new(
                        format!("[{i}].requestMirror.backendRef"),
                        reason.clone(),
                    ));
                }
                // Without a grant nothing is mirrored (an invalid target is skipped); the route
                // itself stays valid, as with backends.
                let target = permitted(target, from);
                Filter::RequestMirror(Mirror {
                    backend: target,
                    per_million,
                })
            }
            "CORS" if rule_level => {
                let s = f.cors.as_ref().ok_or_else(|| missing("cors"))?;
                Filter::Cors(
                    Cors::from_spec(s).map_err(|m| FieldError::new(format!("[{i}].cors"), m))?,
                )
            }
            "ExtensionRef" => {
                let s = f
                    .extension_ref
                    .as_ref()
                    .ok_or_else(|| missing("extensionRef"))?;
                if s.group != FAULT_GROUP || s.kind != FAULT_KIND {
                    Filter::Unresolved {
                        reason: format!(
                            "extensionRef {}/{} is not supported; use {FAULT_GROUP}/{FAULT_KIND}",
                            s.group, s.kind
                        ),
                    }
                } else {
                    match ctx.faults.get(&(route_ns.to_owned(), s.name.clone())) {
                        Some(fault) => Filter::Fault(fault.clone()),
                        None => Filter::Unresolved {
                            reason: format!("{FAULT_KIND} {route_ns}/{} does not exist", s.name),
                        },
                    }
                }
            }
            other => {
                let level = if rule_level { "rule" } else { "backend" };
                return Err(FieldError::new(
                    format!("[{i}].type"),
                    format!("{other:?} is not a supported {level}-level filter"),
                ));
            }
        };
        out.push(filter);
    }
    if seen.contains(&"RequestRedirect") && seen.contains(&"URLRewrite") {
        return Err(FieldError::new(
            "",
            "RequestRedirect and URLRewrite cannot be used together",
        ));
    }
    Ok(out)
}

/// `target`, or an invalid one ([`crate::l7::REF_NOT_PERMITTED`]) when it is a Service of another
/// namespace that no ReferenceGrant lets `from` refer to.
fn permitted(target: BackendTarget, from: &Referrer<'_>) -> BackendTarget {
    match &target {
        BackendTarget::Service {
            namespace, name, ..
        } if !from.may_refer(namespace, name) => BackendTarget::Invalid {
            reason: Grants::refused(from.kind, from.namespace, namespace, name),
        },
        _ => target,
    }
}

fn backend_target(spec: &BackendRefSpec, route_ns: &str) -> BackendTarget {
    let group = spec.group.as_deref().unwrap_or("");
    let kind = spec.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        return BackendTarget::Invalid {
            reason: format!("backend kind {group}/{kind} is not supported (only Service)"),
        };
    }
    if spec.name.is_empty() {
        return BackendTarget::Invalid {
            reason: "backendRef without a name".into(),
        };
    }
    match spec.port.map(|p| port(p, "port")) {
        Some(Ok(port)) => BackendTarget::Service {
            namespace: spec
                .namespace
                .clone()
                .unwrap_or_else(|| route_ns.to_owned()),
            name: spec.name.clone(),
            port,
            subset: None,
        },
        Some(Err(e)) => BackendTarget::Invalid {
            reason: e.to_string(),
        },
        None => BackendTarget::Invalid {
            reason: format!("backendRef to Service {} needs a port", spec.name),
        },
    }
}

pub(super) fn backends(
    specs: &[BackendRefSpec],
    matches: &[RouteMatch],
    from: &Referrer<'_>,
) -> Result<Vec<Backend>, FieldError> {
    let mut out = Vec::new();
    for (i, b) in specs.iter().enumerate() {
        let weight = b.weight.unwrap_or(1);
        if weight > MAX_WEIGHT {
            return Err(FieldError::new(
                format!("[{i}].weight"),
                format!("{weight} is over {MAX_WEIGHT}"),
            ));
        }
        let filters = filters(&b.filters, matches, from, false)
            .map_err(|e| e.under(&format!("[{i}].filters")))?;
        out.push(Backend {
            target: permitted(backend_target(b, from.namespace), from),
            weight,
            filters,
        });
    }
    Ok(out)
}

pub(super) fn timeouts(t: &TimeoutsSpec) -> Result<Timeouts, FieldError> {
    let parse = |v: &Option<String>, f: &str| {
        v.as_deref()
            .map(|s| parse_duration(s).map_err(|m| FieldError::new(f, m)))
            .transpose()
            .map(|d| d.filter(|d| !d.is_zero()))
    };
    let out = Timeouts {
        request: parse(&t.request, "request")?,
        backend_request: parse(&t.backend_request, "backendRequest")?,
    };
    if let (Some(r), Some(b)) = (out.request, out.backend_request)
        && b > r
    {
        return Err(FieldError::new(
            "backendRequest",
            "must not be longer than request",
        ));
    }
    Ok(out)
}

pub(super) fn retry(r: &RetrySpec) -> Result<Retry, FieldError> {
    for (i, c) in r.codes.iter().enumerate() {
        if !(400..=599).contains(c) {
            return Err(FieldError::new(
                format!("codes[{i}]"),
                format!("{c} is not a 4xx/5xx status"),
            ));
        }
    }
    Ok(Retry {
        attempts: r.attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS),
        codes: r.codes.clone(),
        connect_failure: true,
        backoff: r
            .backoff
            .as_deref()
            .map(|b| parse_duration(b).map_err(|m| FieldError::new("backoff", m)))
            .transpose()?,
    })
}
