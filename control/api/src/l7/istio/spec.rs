//! Istio `networking.istio.io` VirtualService and DestinationRule in their wire shape (the fields
//! the waypoint implements; unknown fields are ignored, as the API server validated them).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::l7::spec::ObjectMetaSpec;

/// A whole VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VirtualServiceObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMetaSpec,
    /// `spec`.
    #[serde(default)]
    pub spec: VirtualServiceSpec,
}

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VirtualServiceSpec {
    /// Services the routes apply to (`name`, `name.ns`, or the FQDN).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// HTTP routes, evaluated in order.
    #[serde(default)]
    pub http: Vec<HttpRouteSpec>,
    /// TCP routes: not supported (rejected with a clear reason rather than ignored).
    #[serde(default)]
    pub tcp: Vec<serde_json::Value>,
    /// TLS (SNI) routes: not supported (rejected).
    #[serde(default)]
    pub tls: Vec<serde_json::Value>,
}

/// One `http` route.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions (ORed); none matches everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchSpec>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<DestinationWeightSpec>,
    /// Redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<RedirectSpec>,
    /// Rewrite before forwarding.
    #[serde(default)]
    pub rewrite: Option<RewriteSpec>,
    /// Whole-request timeout (`0.5s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<RetriesSpec>,
    /// Fault injection.
    #[serde(default)]
    pub fault: Option<FaultSpec>,
    /// Mirror destination.
    #[serde(default)]
    pub mirror: Option<DestinationSpec>,
    /// Share mirrored.
    #[serde(default)]
    pub mirror_percentage: Option<PercentSpec>,
    /// Header edits.
    #[serde(default)]
    pub headers: Option<HeadersSpec>,
    /// CORS policy.
    #[serde(default)]
    pub cors_policy: Option<CorsPolicySpec>,
    /// Delegation to another VirtualService: not supported (rejected).
    #[serde(default)]
    pub delegate: Option<serde_json::Value>,
}

/// Istio `CorsPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicySpec {
    /// Allowed origins (only `exact` matches are supported).
    #[serde(default)]
    pub allow_origins: Vec<StringMatchSpec>,
    /// Deprecated list of exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache time (`24h`).
    #[serde(default)]
    pub max_age: Option<String>,
    /// Whether credentials are allowed.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
}

/// `HTTPMatchRequest`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchSpec {
    /// Path condition.
    #[serde(default)]
    pub uri: Option<StringMatchSpec>,
    /// Header conditions.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatchSpec>,
    /// Query conditions.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatchSpec>,
    /// Method condition.
    #[serde(default)]
    pub method: Option<StringMatchSpec>,
}

/// Istio `StringMatch`: one of exact, prefix, regex.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StringMatchSpec {
    /// Exact value.
    #[serde(default)]
    pub exact: Option<String>,
    /// Prefix.
    #[serde(default)]
    pub prefix: Option<String>,
    /// RE2 regular expression (full match).
    #[serde(default)]
    pub regex: Option<String>,
}

/// A weighted destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DestinationWeightSpec {
    /// Where.
    #[serde(default)]
    pub destination: DestinationSpec,
    /// Weight (default 100 when alone).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Header edits for this destination.
    #[serde(default)]
    pub headers: Option<HeadersSpec>,
}

/// `Destination`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DestinationSpec {
    /// Service host.
    #[serde(default)]
    pub host: String,
    /// DestinationRule subset.
    #[serde(default)]
    pub subset: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: Option<PortSpec>,
}

/// `PortSelector`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PortSpec {
    /// Port number.
    pub number: u32,
}

/// `HTTPRedirect`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectSpec {
    /// New path.
    #[serde(default)]
    pub uri: Option<String>,
    /// New host.
    #[serde(default)]
    pub authority: Option<String>,
    /// New port.
    #[serde(default)]
    pub port: Option<u32>,
    /// New scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Status (default 301).
    #[serde(default)]
    pub redirect_code: Option<u16>,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RewriteSpec {
    /// New path (or prefix, when the route matched a prefix).
    #[serde(default)]
    pub uri: Option<String>,
    /// New Host.
    #[serde(default)]
    pub authority: Option<String>,
}

/// `HTTPRetry`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetriesSpec {
    /// Retries (0 disables).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Limit of each try.
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    /// Conditions, comma-separated (`5xx,connect-failure,retriable-status-codes,503`).
    #[serde(default)]
    pub retry_on: Option<String>,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// Delay.
    #[serde(default)]
    pub delay: Option<DelaySpec>,
    /// Abort.
    #[serde(default)]
    pub abort: Option<AbortSpec>,
}

/// Delay of a fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelaySpec {
    /// How long.
    #[serde(default)]
    pub fixed_delay: Option<String>,
    /// Share (default 100%).
    #[serde(default)]
    pub percentage: Option<PercentSpec>,
}

/// Abort of a fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortSpec {
    /// HTTP status.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// gRPC status name or number (e.g. `UNAVAILABLE`).
    #[serde(default)]
    pub grpc_status: Option<serde_json::Value>,
    /// Share (default 100%).
    #[serde(default)]
    pub percentage: Option<PercentSpec>,
}

/// `Percent`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PercentSpec {
    /// 0..=100.
    pub value: f64,
}

/// `Headers`: request and response edits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HeadersSpec {
    /// Request edits.
    #[serde(default)]
    pub request: Option<HeaderOpsSpec>,
    /// Response edits.
    #[serde(default)]
    pub response: Option<HeaderOpsSpec>,
}

/// `HeaderOperations`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HeaderOpsSpec {
    /// Overwrite.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A whole DestinationRule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DestinationRuleObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMetaSpec,
    /// `spec`.
    #[serde(default)]
    pub spec: DestinationRuleSpec,
}

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// The service.
    #[serde(default)]
    pub host: String,
    /// Policy for every subset.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicySpec>,
    /// Named subsets.
    #[serde(default)]
    pub subsets: Vec<SubsetSpec>,
}

/// A subset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubsetSpec {
    /// Name.
    pub name: String,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the rule's policy.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicySpec>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    /// Load balancer.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSpec>,
    /// Connection limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSpec>,
    /// Outlier detection.
    #[serde(default)]
    pub outlier_detection: Option<OutlierSpec>,
    /// Upstream TLS (`ISTIO_MUTUAL` and `DISABLE` only).
    #[serde(default)]
    pub tls: Option<ClientTlsSpec>,
}

/// `ClientTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientTlsSpec {
    /// `DISABLE`, `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `LoadBalancerSettings` (simple only).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LoadBalancerSpec {
    /// `ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`, `PASSTHROUGH`.
    #[serde(default)]
    pub simple: Option<String>,
    /// Consistent hashing: not supported (rejected).
    #[serde(default, rename = "consistentHash")]
    pub consistent_hash: Option<serde_json::Value>,
    /// Locality load balancing: not supported (rejected).
    #[serde(default, rename = "localityLbSetting")]
    pub locality_lb_setting: Option<serde_json::Value>,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ConnectionPoolSpec {
    /// TCP limits.
    #[serde(default)]
    pub tcp: Option<TcpPoolSpec>,
    /// HTTP limits.
    #[serde(default)]
    pub http: Option<HttpPoolSpec>,
}

/// TCP limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpPoolSpec {
    /// Connections to the service at most.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// HTTP limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPoolSpec {
    /// Requests queued for a connection at most.
    #[serde(default)]
    pub http1_max_pending_requests: Option<u32>,
    /// Concurrent requests at most.
    #[serde(default)]
    pub http2_max_requests: Option<u32>,
    /// Requests per connection (1 disables keep-alive).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierSpec {
    /// 5xx answers in a row before ejection.
    #[serde(default)]
    pub consecutive5xx_errors: Option<u32>,
    /// Gateway errors (502, 503, 504) in a row before ejection.
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    /// Analysis interval.
    #[serde(default)]
    pub interval: Option<String>,
    /// Base ejection time (multiplied by the number of ejections).
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    /// Most endpoints ejected at once, in percent.
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
}
