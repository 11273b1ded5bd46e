//! Istio `security.istio.io/v1` AuthorizationPolicy in its wire shape (the `spec` of the
//! Kubernetes object, camelCase, unknown fields rejected). [`super::Policy`] is the validated form.

use serde::{Deserialize, Serialize};

use crate::model::WorkloadSelector;

/// The `spec` of an AuthorizationPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// Workloads (in the policy's namespace, or all namespaces for the root namespace) it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRefSpec>,
    /// Gateway / Service / ServiceEntry the policy attaches to: such policies are enforced by the
    /// waypoint, never by ztunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRefSpec>,
    /// `ALLOW` (default), `DENY`; `AUDIT` and `CUSTOM` are rejected as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Extension provider of a `CUSTOM` policy (unsupported: rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    /// Rules; absent or empty means "matches nothing".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleSpec>>,
}

/// An AuthorizationPolicy with its name and namespace next to the spec fields (the shape of the
/// local config file and of `/config_dump`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicyResource {
    /// Policy name.
    pub name: String,
    /// Policy namespace (the root namespace makes it mesh-wide).
    pub namespace: String,
    /// See [`AuthorizationPolicySpec::selector`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// See [`AuthorizationPolicySpec::target_ref`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRefSpec>,
    /// See [`AuthorizationPolicySpec::target_refs`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRefSpec>,
    /// See [`AuthorizationPolicySpec::action`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// See [`AuthorizationPolicySpec::provider`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    /// See [`AuthorizationPolicySpec::rules`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleSpec>>,
}

impl AuthorizationPolicyResource {
    /// Splits into name, namespace and spec.
    pub fn into_parts(self) -> (String, String, AuthorizationPolicySpec) {
        let spec = AuthorizationPolicySpec {
            selector: self.selector,
            target_ref: self.target_ref,
            target_refs: self.target_refs,
            action: self.action,
            provider: self.provider,
            rules: self.rules,
        };
        (self.name, self.namespace, spec)
    }

    /// Joins name, namespace and spec.
    pub fn from_parts(name: String, namespace: String, spec: AuthorizationPolicySpec) -> Self {
        Self {
            name,
            namespace,
            selector: spec.selector,
            target_ref: spec.target_ref,
            target_refs: spec.target_refs,
            action: spec.action,
            provider: spec.provider,
            rules: spec.rules,
        }
    }
}

/// A policy attachment target (Gateway API `PolicyTargetReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRefSpec {
    /// API group of the target (`gateway.networking.k8s.io`, `""` for core).
    #[serde(default)]
    pub group: String,
    /// Kind of the target (`Gateway`, `Service`, `ServiceEntry`, `GatewayClass`).
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target (defaults to the policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One rule: `from`, `to` and `when` are ANDed; the entries of each list are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Sources; absent means any source. Present but empty is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<FromSpec>>,
    /// Operations; absent means any operation. Present but empty is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<ToSpec>>,
    /// Conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ConditionSpec>,
}

/// Wrapper of a source in `from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FromSpec {
    /// The source; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
}

/// Wrapper of an operation in `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToSpec {
    /// The operation; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationSpec>,
}

/// Who the peer is. Fields set are ANDed; values within a field are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)] // each field is the Istio field of the same name
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// What the peer does. Fields set are ANDed; values within a field are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)] // each field is the Istio field of the same name
pub struct OperationSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strings_or_numbers"
    )]
    pub ports: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strings_or_numbers"
    )]
    pub not_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// An extra condition on an Istio attribute (`source.ip`, `request.headers[x]`...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionSpec {
    /// Attribute name.
    pub key: String,
    /// Values, one of which the attribute must match.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strings_or_numbers"
    )]
    pub values: Vec<String>,
    /// Values none of which the attribute may match.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "strings_or_numbers"
    )]
    pub not_values: Vec<String>,
}

/// A list entry written as a string or, for ports, as a bare YAML number.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(u64),
}

/// Reads a list of strings, accepting bare numbers (`ports: [8080]`) as their decimal text.
fn strings_or_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items = Vec::<StringOrNumber>::deserialize(d)?;
    Ok(items
        .into_iter()
        .map(|i| match i {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        })
        .collect())
}
