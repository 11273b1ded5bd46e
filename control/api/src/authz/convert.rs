//! Spec <-> validated policy conversion, with field paths in every error.

use ipnet::IpNet;

use super::matchers::{ServiceAccountMatch, StringMatch, parse_ip_block, parse_port};
use super::policy::{
    Action, Condition, ConditionTest, Operation, Policy, PolicyError, Rule, Source, Values,
};
use super::spec::{
    AuthorizationPolicyResource, AuthorizationPolicySpec, ConditionSpec, FromSpec, OperationSpec,
    RuleSpec, SourceSpec, ToSpec,
};
use crate::model::{FieldError, WorkloadSelector, names};

/// Prefix of SPIFFE URIs, which Istio principals are written without.
const SPIFFE_PREFIX: &str = "spiffe://";

pub(super) fn policy_from_spec(
    name: &str,
    namespace: &str,
    spec: AuthorizationPolicySpec,
) -> Result<Policy, PolicyError> {
    names::dns_subdomain(name).map_err(|m| FieldError::new("name", m))?;
    names::dns_label(namespace).map_err(|m| FieldError::new("namespace", m))?;
    let action = match spec.action.as_deref() {
        None | Some("ALLOW") => Action::Allow,
        Some("DENY") => Action::Deny,
        Some(a @ ("AUDIT" | "CUSTOM")) => {
            return Err(PolicyError::UnsupportedAction {
                action: a.to_string(),
            });
        }
        Some(other) => {
            return Err(
                FieldError::new("action", format!("{other:?} is not ALLOW or DENY")).into(),
            );
        }
    };
    if spec.provider.is_some() {
        return Err(FieldError::new(
            "provider",
            "only valid with action CUSTOM, which is not supported",
        )
        .into());
    }
    if let Some(sel) = &spec.selector {
        sel.validate().map_err(|e| e.under("selector"))?;
    }
    let selector = WorkloadSelector::non_empty(spec.selector);
    if spec.target_ref.is_some() && !spec.target_refs.is_empty() {
        return Err(
            FieldError::new("targetRef", "set either targetRef or targetRefs, not both").into(),
        );
    }
    let mut target_refs = spec.target_refs;
    target_refs.extend(spec.target_ref);
    if selector.is_some() && !target_refs.is_empty() {
        return Err(
            FieldError::new("selector", "set either selector or targetRefs, not both").into(),
        );
    }
    for (i, t) in target_refs.iter().enumerate() {
        if t.kind.is_empty() || t.name.is_empty() {
            return Err(
                FieldError::new(format!("targetRefs[{i}]"), "kind and name are required").into(),
            );
        }
    }
    let rules = spec
        .rules
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| rule(r, namespace).map_err(|e| e.under(&format!("rules[{i}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        selector,
        target_refs,
        action,
        rules,
    })
}

fn rule(r: RuleSpec, namespace: &str) -> Result<Rule, FieldError> {
    let from = match r.from {
        None => Vec::new(),
        Some(v) if v.is_empty() => {
            return Err(FieldError::new(
                "from",
                "must not be empty: remove it to match any source",
            ));
        }
        Some(v) => v
            .into_iter()
            .enumerate()
            .map(|(i, f)| from(f, namespace).map_err(|e| e.under(&format!("from[{i}]"))))
            .collect::<Result<_, _>>()?,
    };
    let to = match r.to {
        None => Vec::new(),
        Some(v) if v.is_empty() => {
            return Err(FieldError::new(
                "to",
                "must not be empty: remove it to match any operation",
            ));
        }
        Some(v) => v
            .into_iter()
            .enumerate()
            .map(|(i, t)| to(t).map_err(|e| e.under(&format!("to[{i}]"))))
            .collect::<Result<_, _>>()?,
    };
    let when = r
        .when
        .into_iter()
        .enumerate()
        .map(|(i, c)| condition(c).map_err(|e| e.under(&format!("when[{i}]"))))
        .collect::<Result<_, _>>()?;
    Ok(Rule { from, to, when })
}

/// Parses every value of a list with `parse`, locating errors as `field[i]`.
fn each<T>(
    field: &str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, FieldError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|m| FieldError::new(format!("{field}[{i}]"), m)))
        .collect()
}

fn principal(value: &str) -> Result<StringMatch, String> {
    if value.starts_with(SPIFFE_PREFIX) {
        return Err(format!(
            "{value:?}: write principals without the spiffe:// prefix, e.g. cluster.local/ns/default/sa/client"
        ));
    }
    StringMatch::parse(value)
}

fn not_empty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("empty string is not a valid value".into());
    }
    Ok(value.to_string())
}

fn from(f: FromSpec, namespace: &str) -> Result<Source, FieldError> {
    let s = f
        .source
        .ok_or_else(|| FieldError::new("source", "is required"))?;
    if s == SourceSpec::default() {
        return Err(FieldError::new("source", "must set at least one field"));
    }
    let sa = |v: &str| ServiceAccountMatch::parse(v, namespace);
    let wrap = |e: FieldError| e.under("source");
    Ok(Source {
        principals: each("principals", &s.principals, principal).map_err(wrap)?,
        not_principals: each("notPrincipals", &s.not_principals, principal).map_err(wrap)?,
        request_principals: each(
            "requestPrincipals",
            &s.request_principals,
            StringMatch::parse,
        )
        .map_err(wrap)?,
        not_request_principals: each(
            "notRequestPrincipals",
            &s.not_request_principals,
            StringMatch::parse,
        )
        .map_err(wrap)?,
        namespaces: each("namespaces", &s.namespaces, StringMatch::parse).map_err(wrap)?,
        not_namespaces: each("notNamespaces", &s.not_namespaces, StringMatch::parse)
            .map_err(wrap)?,
        service_accounts: each("serviceAccounts", &s.service_accounts, sa).map_err(wrap)?,
        not_service_accounts: each("notServiceAccounts", &s.not_service_accounts, sa)
            .map_err(wrap)?,
        ip_blocks: each("ipBlocks", &s.ip_blocks, parse_ip_block).map_err(wrap)?,
        not_ip_blocks: each("notIpBlocks", &s.not_ip_blocks, parse_ip_block).map_err(wrap)?,
        remote_ip_blocks: each("remoteIpBlocks", &s.remote_ip_blocks, parse_ip_block)
            .map_err(wrap)?,
        not_remote_ip_blocks: each("notRemoteIpBlocks", &s.not_remote_ip_blocks, parse_ip_block)
            .map_err(wrap)?,
    })
}

fn to(t: ToSpec) -> Result<Operation, FieldError> {
    let o = t
        .operation
        .ok_or_else(|| FieldError::new("operation", "is required"))?;
    if o == OperationSpec::default() {
        return Err(FieldError::new("operation", "must set at least one field"));
    }
    let wrap = |e: FieldError| e.under("operation");
    Ok(Operation {
        ports: each("ports", &o.ports, parse_port).map_err(wrap)?,
        not_ports: each("notPorts", &o.not_ports, parse_port).map_err(wrap)?,
        hosts: each("hosts", &o.hosts, not_empty).map_err(wrap)?,
        not_hosts: each("notHosts", &o.not_hosts, not_empty).map_err(wrap)?,
        methods: each("methods", &o.methods, not_empty).map_err(wrap)?,
        not_methods: each("notMethods", &o.not_methods, not_empty).map_err(wrap)?,
        paths: each("paths", &o.paths, not_empty).map_err(wrap)?,
        not_paths: each("notPaths", &o.not_paths, not_empty).map_err(wrap)?,
    })
}

fn values<T>(
    c: &ConditionSpec,
    parse: impl Fn(&str) -> Result<T, String> + Copy,
) -> Result<Values<T>, FieldError> {
    Ok(Values {
        values: each("values", &c.values, parse)?,
        not_values: each("notValues", &c.not_values, parse)?,
    })
}

fn condition(c: ConditionSpec) -> Result<Condition, FieldError> {
    if c.key.is_empty() {
        return Err(FieldError::new("key", "must not be empty"));
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(FieldError::new(
            "values",
            "set values or notValues (or both)",
        ));
    }
    let ip = |v: &str| parse_ip_block(v);
    let test = match c.key.as_str() {
        "source.ip" => ConditionTest::SourceIp(values::<IpNet>(&c, ip)?),
        "remote.ip" => ConditionTest::RemoteIp(values(&c, ip)?),
        "destination.ip" => ConditionTest::DestinationIp(values(&c, ip)?),
        "source.namespace" => ConditionTest::SourceNamespace(values(&c, StringMatch::parse)?),
        "source.principal" => ConditionTest::SourcePrincipal(values(&c, principal)?),
        "destination.port" => ConditionTest::DestinationPort(values(&c, parse_port)?),
        _ => {
            each("values", &c.values, not_empty)?;
            each("notValues", &c.not_values, not_empty)?;
            ConditionTest::NotL4
        }
    };
    Ok(Condition {
        key: c.key,
        values: c.values,
        not_values: c.not_values,
        test,
    })
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn ip_strings(v: &[IpNet]) -> Vec<String> {
    // A host block is written back as the single address it was most likely written as.
    v.iter()
        .map(|n| {
            if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            }
        })
        .collect()
}

pub(super) fn policy_to_resource(p: Policy) -> AuthorizationPolicyResource {
    let rules = p.rules.into_iter().map(rule_to_spec).collect();
    let action = match p.action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
    };
    AuthorizationPolicyResource {
        name: p.name,
        namespace: p.namespace,
        selector: p.selector,
        target_ref: None,
        target_refs: p.target_refs,
        action: Some(action.to_string()),
        provider: None,
        rules: Some(rules),
    }
}

fn rule_to_spec(r: Rule) -> RuleSpec {
    let from = (!r.from.is_empty()).then(|| {
        r.from
            .iter()
            .map(|s| FromSpec {
                source: Some(SourceSpec {
                    principals: strings(&s.principals),
                    not_principals: strings(&s.not_principals),
                    request_principals: strings(&s.request_principals),
                    not_request_principals: strings(&s.not_request_principals),
                    namespaces: strings(&s.namespaces),
                    not_namespaces: strings(&s.not_namespaces),
                    service_accounts: strings(&s.service_accounts),
                    not_service_accounts: strings(&s.not_service_accounts),
                    ip_blocks: ip_strings(&s.ip_blocks),
                    not_ip_blocks: ip_strings(&s.not_ip_blocks),
                    remote_ip_blocks: ip_strings(&s.remote_ip_blocks),
                    not_remote_ip_blocks: ip_strings(&s.not_remote_ip_blocks),
                }),
            })
            .collect()
    });
    let to = (!r.to.is_empty()).then(|| {
        r.to.into_iter()
            .map(|o| ToSpec {
                operation: Some(OperationSpec {
                    ports: strings(&o.ports),
                    not_ports: strings(&o.not_ports),
                    hosts: o.hosts,
                    not_hosts: o.not_hosts,
                    methods: o.methods,
                    not_methods: o.not_methods,
                    paths: o.paths,
                    not_paths: o.not_paths,
                }),
            })
            .collect()
    });
    let when = r
        .when
        .into_iter()
        .map(|c| ConditionSpec {
            key: c.key,
            values: c.values,
            not_values: c.not_values,
        })
        .collect();
    RuleSpec { from, to, when }
}
