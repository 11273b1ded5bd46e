//! The validated route model: what the waypoint matches requests against. Built from
//! `HTTPRoute` / `GRPCRoute` specs by [`super::convert`]; serializes to JSON for `/config_dump`.

use std::time::Duration;

use serde::Serialize;

use super::cors::Cors;
use super::fault::Fault;
use super::pattern::{Pattern, ValueMatch};

/// Which Gateway API kind a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RouteKind {
    /// `HTTPRoute`.
    #[serde(rename = "HTTPRoute")]
    Http,
    /// `GRPCRoute`.
    #[serde(rename = "GRPCRoute")]
    Grpc,
    /// Istio `VirtualService` (rules evaluated in order, first match wins).
    VirtualService,
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "HTTPRoute",
            Self::Grpc => "GRPCRoute",
            Self::VirtualService => "VirtualService",
        })
    }
}

/// A validated route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Source kind.
    pub kind: RouteKind,
    /// Namespace of the route object.
    pub namespace: String,
    /// Name of the route object.
    pub name: String,
    /// RFC 3339 creation time, when known (older wins precedence ties).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What the route attaches to.
    pub parents: Vec<Parent>,
    /// Host names (lower case; `*.` wildcards), only used with Gateway parents.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules, in the order written.
    pub rules: Vec<Rule>,
}

/// A parent reference of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Parent {
    /// A Service (GAMMA): traffic addressed to it.
    Service {
        /// Service namespace.
        namespace: String,
        /// Service name.
        name: String,
        /// Only this service port, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// A Gateway (the waypoint itself): every service it serves.
    Gateway {
        /// Gateway namespace.
        namespace: String,
        /// Gateway name.
        name: String,
        /// Only this listener/service port, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
}

/// A rule: matches, filters, backends, timeouts and retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Optional rule name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches (ORed); never empty (a rule without matches gets `PathPrefix /`).
    pub matches: Vec<RouteMatch>,
    /// Rule-level filters, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// Weighted backends (empty with a redirect filter).
    pub backends: Vec<Backend>,
    /// Timeouts.
    #[serde(skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// One match: every condition present must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition.
    pub path: PathMatch,
    /// Header conditions (names lower case).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NamedMatch>,
    /// Query parameter conditions (names case-sensitive).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<NamedMatch>,
    /// Method (upper case), if required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl RouteMatch {
    /// The match of a rule without matches: every request.
    pub fn any() -> Self {
        Self {
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            query_params: Vec::new(),
            method: None,
        }
    }
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum PathMatch {
    /// The path (without query) equals the value.
    Exact(String),
    /// Segment-wise prefix: `/abc` matches `/abc`, `/abc/`, `/abc/d`, not `/abcd`. Stored
    /// without a trailing slash (except `/` itself).
    #[serde(rename = "PathPrefix")]
    Prefix(String),
    /// Full match of a regular expression on the path (without query).
    #[serde(rename = "RegularExpression")]
    Regex(Pattern),
    /// Plain string prefix (Istio VirtualService `uri.prefix`): `/abc` matches `/abcd` too.
    #[serde(rename = "StringPrefix")]
    RawPrefix(String),
}

/// A header or query parameter condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedMatch {
    /// Header name (lower case) or parameter name.
    pub name: String,
    /// Value condition.
    pub value: ValueMatch,
}

/// A filter (rule- or backend-level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Filter {
    /// Edit request headers.
    RequestHeaderModifier(HeaderModifier),
    /// Edit response headers.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect instead of forwarding.
    RequestRedirect(Redirect),
    /// Rewrite host and/or path before forwarding.
    #[serde(rename = "URLRewrite")]
    UrlRewrite(UrlRewrite),
    /// Send a copy of requests to another backend.
    RequestMirror(Mirror),
    /// CORS answers and headers.
    #[serde(rename = "CORS")]
    Cors(Cors),
    /// Fault injection from an `ExtensionRef` to our `HTTPFault`.
    Fault(Fault),
    /// An `ExtensionRef` that cannot be resolved: requests it applies to get 500 (Gateway API:
    /// an unresolvable custom filter must not be skipped).
    Unresolved {
        /// Why it cannot be used.
        reason: String,
    },
}

/// Header edits: set (overwrite), then add (append), then remove. Names are lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderModifier {
    /// Overwrite these headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Append these header values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    /// Remove these headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A new path for redirects and rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the matched `PathPrefix` (stored without trailing slash, `""` for `/`).
    ReplacePrefixMatch(String),
}

/// `RequestRedirect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// `http` or `https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// New port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// `URLRewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    /// New Host / `:authority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

/// `RequestMirror`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// Where copies go.
    pub backend: BackendTarget,
    /// Share of requests mirrored, in millionths (1_000_000 = all).
    pub per_million: u32,
}

/// What a backend reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum BackendTarget {
    /// A Service port.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Service port; 0 = the port the client dialed (VirtualService destinations without
        /// a port).
        port: u16,
        /// DestinationRule subset (VirtualService destinations).
        #[serde(skip_serializing_if = "Option::is_none")]
        subset: Option<String>,
    },
    /// A reference the waypoint cannot send to (other kinds, missing port, a Service of another
    /// namespace without a `ReferenceGrant`): requests routed to it get 500, mirrors to it are
    /// skipped.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// A weighted backend with its own filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Destination.
    pub target: BackendTarget,
    /// Relative weight (0 = never chosen).
    pub weight: u32,
    /// Filters applied when this backend is chosen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// Timeouts of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Whole request including retries (`None` = no limit): 504 when exceeded.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub request: Option<Duration>,
    /// Each attempt to a backend: 504 (or a retry) when exceeded.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub backend_request: Option<Duration>,
}

impl Timeouts {
    /// Whether no timeout is set.
    pub fn is_empty(&self) -> bool {
        self.request.is_none() && self.backend_request.is_none()
    }
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Response codes that are retried.
    pub codes: Vec<u16>,
    /// Also retry on connect failures / resets before a response (always true for Gateway API).
    pub connect_failure: bool,
    /// Base wait between attempts (doubles up to 10x).
    #[serde(with = "opt_duration")]
    pub backoff: Option<Duration>,
}

impl Retry {
    /// Whether a response with `status` should be retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.codes.contains(&status)
    }

    /// Wait before retry number `n` (1-based): base * 2^(n-1), at most 10x base.
    pub fn backoff_for(&self, n: u32) -> Duration {
        let base = self.backoff.unwrap_or(DEFAULT_RETRY_BACKOFF);
        let factor = 1u32 << n.saturating_sub(1).min(10);
        (base * factor).min(base * 10)
    }
}

/// Base retry wait when a policy names none (Envoy's default, 25 ms).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);

mod opt_duration {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }
}
