//! The Gateway API `CORS` filter: answering preflight requests and decorating responses.

use serde::Serialize;

use super::spec::CorsSpec;

/// Preflight cache time when the filter names none (Gateway API default).
pub const DEFAULT_MAX_AGE: u32 = 5;

/// A validated CORS policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins: `*`, or `scheme://host[:port]` whose host may start with `*.`.
    pub allow_origins: Vec<String>,
    /// Whether `Access-Control-Allow-Credentials: true` is sent.
    pub allow_credentials: bool,
    /// Allowed methods (`*` = any).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*` = any).
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    pub expose_headers: Vec<String>,
    /// Preflight cache seconds.
    pub max_age: u32,
}

impl Cors {
    /// Validates the spec: origins must be `*` or `scheme://host[:port]`.
    pub fn from_spec(spec: &CorsSpec) -> Result<Self, String> {
        for o in &spec.allow_origins {
            if o != "*" && !o.contains("://") {
                return Err(format!(
                    "allowOrigins entry {o:?} is not `*` or scheme://host[:port]"
                ));
            }
        }
        Ok(Self {
            allow_origins: spec
                .allow_origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
            allow_credentials: spec.allow_credentials.unwrap_or(false),
            allow_methods: spec.allow_methods.clone(),
            allow_headers: spec.allow_headers.clone(),
            expose_headers: spec.expose_headers.clone(),
            max_age: spec.max_age.unwrap_or(DEFAULT_MAX_AGE),
        })
    }

    /// Whether `origin` (the request's `Origin` header) is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allow_origins.iter().any(|allowed| {
            if allowed == "*" || *allowed == origin {
                return true;
            }
            let (Some((a_scheme, a_host)), Some((o_scheme, o_host))) =
                (allowed.split_once("://"), origin.split_once("://"))
            else {
                return false;
            };
            match a_host.strip_prefix('*') {
                Some(suffix) => a_scheme == o_scheme && o_host.ends_with(suffix),
                None => false,
            }
        })
    }

    /// Headers of the answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`); empty when the origin is not allowed (the browser then
    /// blocks the request).
    pub fn preflight_headers(&self, origin: &str) -> Vec<(String, String)> {
        if !self.origin_allowed(origin) {
            return Vec::new();
        }
        let mut h = self.common(origin);
        if !self.allow_methods.is_empty() {
            h.push((
                "access-control-allow-methods".into(),
                self.allow_methods.join(", "),
            ));
        }
        if !self.allow_headers.is_empty() {
            h.push((
                "access-control-allow-headers".into(),
                self.allow_headers.join(", "),
            ));
        }
        h.push(("access-control-max-age".into(), self.max_age.to_string()));
        h
    }

    /// Headers added to the response of an actual (non-preflight) request with `Origin`.
    pub fn response_headers(&self, origin: &str) -> Vec<(String, String)> {
        if !self.origin_allowed(origin) {
            return Vec::new();
        }
        let mut h = self.common(origin);
        if !self.expose_headers.is_empty() {
            h.push((
                "access-control-expose-headers".into(),
                self.expose_headers.join(", "),
            ));
        }
        h
    }

    fn common(&self, origin: &str) -> Vec<(String, String)> {
        // With credentials, `*` is not allowed by browsers: echo the origin instead.
        let allow = if self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials {
            "*".to_owned()
        } else {
            origin.to_owned()
        };
        let mut h = vec![("access-control-allow-origin".into(), allow)];
        if self.allow_credentials {
            h.push(("access-control-allow-credentials".into(), "true".into()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], creds: bool) -> Cors {
        Cors::from_spec(&CorsSpec {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_credentials: Some(creds),
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-a".into()],
            expose_headers: vec!["x-b".into()],
            max_age: None,
        })
        .unwrap()
    }

    #[test]
    fn origins_match_exactly_or_by_host_wildcard() {
        let c = cors(&["https://www.example.com", "https://*.foo.com"], false);
        assert!(c.origin_allowed("https://www.example.com"));
        assert!(c.origin_allowed("HTTPS://WWW.EXAMPLE.COM"));
        assert!(c.origin_allowed("https://a.foo.com"));
        assert!(!c.origin_allowed("http://a.foo.com"), "scheme must match");
        assert!(!c.origin_allowed("https://evil.com"));
        assert!(cors(&["*"], false).origin_allowed("http://anything"));
    }

    #[test]
    fn preflight_and_response_headers() {
        let c = cors(&["https://www.example.com"], true);
        let pre = c.preflight_headers("https://www.example.com");
        let get = |h: &[(String, String)], n: &str| {
            h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&pre, "access-control-allow-origin").as_deref(),
            Some("https://www.example.com")
        );
        assert_eq!(
            get(&pre, "access-control-allow-methods").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(get(&pre, "access-control-max-age").as_deref(), Some("5"));
        assert_eq!(
            get(&pre, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        let resp = c.response_headers("https://www.example.com");
        assert_eq!(
            get(&resp, "access-control-expose-headers").as_deref(),
            Some("x-b")
        );
        assert!(c.preflight_headers("https://other.com").is_empty());
        assert!(c.response_headers("https://other.com").is_empty());
    }

    #[test]
    fn wildcard_without_credentials_answers_star() {
        let c = cors(&["*"], false);
        let h = c.response_headers("https://x.com");
        assert_eq!(h[0].1, "*");
    }

    #[test]
    fn origins_without_scheme_are_rejected() {
        let spec = CorsSpec {
            allow_origins: vec!["example.com".into()],
            ..Default::default()
        };
        assert!(Cors::from_spec(&spec).unwrap_err().contains("example.com"));
    }
}
