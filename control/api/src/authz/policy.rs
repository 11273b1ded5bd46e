//! The validated form of an AuthorizationPolicy: every value parsed once into a matcher, so
//! evaluation per connection does no parsing and cannot fail.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::convert;
use super::matchers::{ServiceAccountMatch, StringMatch};
use super::spec::{AuthorizationPolicyResource, AuthorizationPolicySpec, TargetRefSpec};
use crate::model::{FieldError, WorkloadSelector};

/// Why an AuthorizationPolicy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A field has an invalid value (the field path says which).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The action is valid Istio but not enforceable here.
    #[error(
        "action: {action} is not supported: this mesh enforces ALLOW and DENY only (AUDIT and CUSTOM need extensions it does not have)"
    )]
    UnsupportedAction {
        /// The action as written.
        action: String,
    },
}

/// What a matching policy does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Allow matching connections; with any ALLOW policy present, everything else is denied.
    #[default]
    Allow,
    /// Deny matching connections (evaluated before ALLOW).
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "ALLOW",
            Self::Deny => "DENY",
        })
    }
}

/// `namespace/name` of a policy, for logs and deny reasons.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A validated AuthorizationPolicy. Serializes as an [`AuthorizationPolicyResource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "AuthorizationPolicyResource",
    into = "AuthorizationPolicyResource"
)]
pub struct Policy {
    /// Policy name.
    pub name: String,
    /// Policy namespace.
    pub namespace: String,
    /// Workload selector; `None` selects the whole namespace (the whole mesh in the root namespace).
    pub selector: Option<WorkloadSelector>,
    /// Attachment targets. A policy with targets is the waypoint's: ztunnel ignores it.
    pub target_refs: Vec<TargetRefSpec>,
    /// ALLOW or DENY.
    pub action: Action,
    /// Rules; the policy matches when any rule matches. Empty matches nothing.
    pub rules: Vec<Rule>,
}

/// One rule: matches when some source, some operation and every condition match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Sources (ORed); empty means any source.
    pub from: Vec<Source>,
    /// Operations (ORed); empty means any operation.
    pub to: Vec<Operation>,
    /// Conditions (ANDed).
    pub when: Vec<Condition>,
}

/// A parsed `source` (fields ANDed, values ORed, `not_*` negated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the Istio field of the same name
pub struct Source {
    pub principals: Vec<StringMatch>,
    pub not_principals: Vec<StringMatch>,
    /// JWT principals: L7, not evaluable by ztunnel.
    pub request_principals: Vec<StringMatch>,
    /// JWT principals: L7, not evaluable by ztunnel.
    pub not_request_principals: Vec<StringMatch>,
    pub namespaces: Vec<StringMatch>,
    pub not_namespaces: Vec<StringMatch>,
    pub service_accounts: Vec<ServiceAccountMatch>,
    pub not_service_accounts: Vec<ServiceAccountMatch>,
    pub ip_blocks: Vec<IpNet>,
    pub not_ip_blocks: Vec<IpNet>,
    pub remote_ip_blocks: Vec<IpNet>,
    pub not_remote_ip_blocks: Vec<IpNet>,
}

/// A parsed `operation`. Only ports are L4; hosts, methods and paths are HTTP attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the Istio field of the same name
pub struct Operation {
    pub ports: Vec<u16>,
    pub not_ports: Vec<u16>,
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

/// A `when` condition: the text as written and its parsed test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Attribute name as written.
    pub key: String,
    /// Values as written.
    pub values: Vec<String>,
    /// Negative values as written.
    pub not_values: Vec<String>,
    /// The parsed test.
    pub test: ConditionTest,
}

/// Positive and negative values of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values<T> {
    /// The attribute must match one of these (if any are given).
    pub values: Vec<T>,
    /// The attribute must match none of these.
    pub not_values: Vec<T>,
}

/// What a `when` condition tests, for the attributes ztunnel knows at L4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionTest {
    /// `source.ip`: the peer's address.
    SourceIp(Values<IpNet>),
    /// `remote.ip`: the peer's address (no proxy headers exist at L4).
    RemoteIp(Values<IpNet>),
    /// `source.namespace`: namespace of the peer identity.
    SourceNamespace(Values<StringMatch>),
    /// `source.principal`: `<td>/ns/<ns>/sa/<sa>` of the peer identity.
    SourcePrincipal(Values<StringMatch>),
    /// `destination.ip`: the address the connection was made to.
    DestinationIp(Values<IpNet>),
    /// `destination.port`: the port the connection was made to.
    DestinationPort(Values<u16>),
    /// Any other key (HTTP/JWT attributes, or unknown): not evaluable at L4.
    NotL4,
}

impl Policy {
    /// Validates the spec of the policy `namespace/name`.
    pub fn from_spec(
        name: &str,
        namespace: &str,
        spec: AuthorizationPolicySpec,
    ) -> Result<Self, PolicyError> {
        convert::policy_from_spec(name, namespace, spec)
    }

    /// `namespace/name`.
    pub fn key(&self) -> PolicyRef {
        PolicyRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether the policy is the waypoint's (`targetRefs`), which ztunnel does not enforce.
    pub fn is_waypoint_policy(&self) -> bool {
        !self.target_refs.is_empty()
    }

    /// Attributes in the policy that ztunnel cannot evaluate at L4 (`methods`,
    /// `request.headers[x]`...), sorted: in an ALLOW policy the rules using them match nothing,
    /// in a DENY policy they are ignored (more restrictive). Empty when fully L4.
    pub fn l7_attributes(&self) -> Vec<String> {
        let mut found = BTreeSet::new();
        for rule in &self.rules {
            rule.collect_l7(&mut found);
        }
        found.into_iter().collect()
    }
}

impl Rule {
    /// Whether any part of the rule needs HTTP/JWT attributes.
    pub fn has_l7(&self) -> bool {
        self.from.iter().any(Source::has_l7)
            || self.to.iter().any(Operation::has_l7)
            || self.when.iter().any(|c| c.test == ConditionTest::NotL4)
    }

    fn collect_l7(&self, found: &mut BTreeSet<String>) {
        for s in &self.from {
            let fields = [
                ("requestPrincipals", s.request_principals.is_empty()),
                ("notRequestPrincipals", s.not_request_principals.is_empty()),
            ];
            found.extend(
                fields
                    .iter()
                    .filter(|(_, empty)| !empty)
                    .map(|(n, _)| n.to_string()),
            );
        }
        for o in &self.to {
            let fields = [
                ("hosts", o.hosts.is_empty()),
                ("notHosts", o.not_hosts.is_empty()),
                ("methods", o.methods.is_empty()),
                ("notMethods", o.not_methods.is_empty()),
                ("paths", o.paths.is_empty()),
                ("notPaths", o.not_paths.is_empty()),
            ];
            found.extend(
                fields
                    .iter()
                    .filter(|(_, empty)| !empty)
                    .map(|(n, _)| n.to_string()),
            );
        }
        for c in self.when.iter().filter(|c| c.test == ConditionTest::NotL4) {
            found.insert(c.key.clone());
        }
    }
}

impl Source {
    /// Whether the source uses JWT (request) principals.
    pub fn has_l7(&self) -> bool {
        !self.request_principals.is_empty() || !self.not_request_principals.is_empty()
    }
}

impl Operation {
    /// Whether the operation uses hosts, methods or paths.
    pub fn has_l7(&self) -> bool {
        !(self.hosts.is_empty()
            && self.not_hosts.is_empty()
            && self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty())
    }
}

impl TryFrom<AuthorizationPolicyResource> for Policy {
    type Error = PolicyError;
    fn try_from(r: AuthorizationPolicyResource) -> Result<Self, PolicyError> {
        let (name, namespace, spec) = r.into_parts();
        Self::from_spec(&name, &namespace, spec)
    }
}

impl From<Policy> for AuthorizationPolicyResource {
    fn from(p: Policy) -> Self {
        convert::policy_to_resource(p)
    }
}
