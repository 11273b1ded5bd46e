//! GRPCRoute rules and matches, and our `HTTPFault` kind, in their wire shape.

use serde::{Deserialize, Serialize};

use super::{BackendRefSpec, HttpFilterSpec, NameValueMatchSpec, ObjectMetaSpec};

/// A `GRPCRouteRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRuleSpec {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches (ORed); none matches every call.
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatchSpec>,
    /// Rule-level filters (`RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`,
    /// `ExtensionRef`).
    #[serde(default)]
    pub filters: Vec<HttpFilterSpec>,
    /// Weighted backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRefSpec>,
}

/// A `GRPCRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatchSpec {
    /// Service / method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatchSpec>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<NameValueMatchSpec>,
}

/// `GRPCMethodMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatchSpec {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Fully qualified service, e.g. `proto.EchoTestService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Method, e.g. `Echo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Our `HTTPFault` object (group [`crate::l7::FAULT_GROUP`]): fault injection referenced from an
/// HTTPRoute `ExtensionRef` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpFaultObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMetaSpec,
    /// `spec`.
    #[serde(default)]
    pub spec: HttpFaultSpec,
}

/// `HTTPFault.spec`: a delay and/or an abort, each for a share of the requests, optionally only
/// for requests with matching headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultSpec {
    /// Delay before the request is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelaySpec>,
    /// Answer with an error instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbortSpec>,
    /// Only requests with all these headers are affected (ANDed).
    #[serde(default)]
    pub headers: Vec<NameValueMatchSpec>,
}

/// `HTTPFault.spec.delay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelaySpec {
    /// How long (Gateway API duration, e.g. `7s`).
    pub fixed_delay: String,
    /// Share of requests delayed, 0..=100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

impl Eq for FaultDelaySpec {}

/// `HTTPFault.spec.abort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbortSpec {
    /// HTTP status answered (e.g. 500, 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// gRPC status answered to gRPC calls instead (e.g. 14 = UNAVAILABLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// Share of requests aborted, 0..=100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

impl Eq for FaultAbortSpec {}
