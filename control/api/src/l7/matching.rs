//! Matching one request against route matches ([`RouteMatch::matches`]).

use std::borrow::Cow;

use super::route::{NamedMatch, PathMatch, RouteMatch};

/// What matching needs to see of a request. The waypoint implements it over its HTTP types;
/// [`SimpleRequest`] is a plain owned implementation.
pub trait RequestView {
    /// Method, upper case (`GET`).
    fn method(&self) -> &str;
    /// Path without the query string (`/a/b`).
    fn path(&self) -> &str;
    /// The query string without `?`, if any.
    fn query(&self) -> Option<&str>;
    /// All values of header `name` (lower case), joined with `,` in arrival order (Envoy's
    /// view of repeated headers); `None` when absent.
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// A request as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleRequest {
    /// Method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query without `?`.
    pub query: Option<String>,
    /// Headers (names any case).
    pub headers: Vec<(String, String)>,
}

impl SimpleRequest {
    /// A `method` request for `target` (`/path?query`).
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (target, None),
        };
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl RequestView for SimpleRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        match values.as_slice() {
            [] => None,
            [one] => Some(Cow::Borrowed(one)),
            many => Some(Cow::Owned(many.join(","))),
        }
    }
}

/// The first value of query parameter `name` in `query` (`a=1&b=2`), percent-decoding neither
/// name nor value (Gateway API compares them as sent). A parameter without `=` has value `""`.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

impl PathMatch {
    /// Whether `path` (no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => prefix_matches(p, path),
            Self::Regex(re) => re.is_match(path),
            Self::RawPrefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// Segment-wise prefix test; `prefix` has no trailing slash unless it is `/`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

impl RouteMatch {
    /// Whether every condition of the match holds for `req`.
    pub fn matches(&self, req: &dyn RequestView) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method()) {
            return false;
        }
        if !self.path.matches(req.path()) {
            return false;
        }
        if !self.headers.iter().all(|h| header_matches(h, req)) {
            return false;
        }
        self.query_params.iter().all(|q| {
            req.query()
                .and_then(|query| query_param(query, &q.name))
                .is_some_and(|v| q.value.is_match(v))
        })
    }
}

fn header_matches(h: &NamedMatch, req: &dyn RequestView) -> bool {
    req.header(&h.name).is_some_and(|v| h.value.is_match(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::pattern::{Pattern, ValueMatch};

    fn m(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            ..RouteMatch::any()
        }
    }

    #[test]
    fn prefix_matching_is_segment_wise() {
        let p = PathMatch::Prefix("/v2".into());
        assert!(p.matches("/v2"));
        assert!(p.matches("/v2/"));
        assert!(p.matches("/v2/example"));
        assert!(!p.matches("/v2example"), "not a segment prefix");
        assert!(!p.matches("/foo/v2/example"));
        assert!(PathMatch::Prefix("/".into()).matches("/anything"));
    }

    #[test]
    fn exact_and_regex_paths_ignore_the_query() {
        let exact = m(PathMatch::Exact("/v1".into()));
        assert!(exact.matches(&SimpleRequest::new("GET", "/v1?x=1")));
        assert!(!exact.matches(&SimpleRequest::new("GET", "/v1/")));
        let re = m(PathMatch::Regex(Pattern::new("/v[0-9]").unwrap()));
        assert!(re.matches(&SimpleRequest::new("GET", "/v7?a")));
        assert!(!re.matches(&SimpleRequest::new("GET", "/v77")));
    }

    #[test]
    fn headers_match_case_insensitively_by_name_and_exactly_by_value() {
        let mut rm = RouteMatch::any();
        rm.headers.push(NamedMatch {
            name: "version".into(),
            value: ValueMatch::Exact("one".into()),
        });
        assert!(rm.matches(&SimpleRequest::new("GET", "/").header("Version", "one")));
        assert!(!rm.matches(&SimpleRequest::new("GET", "/").header("version", "One")));
        assert!(!rm.matches(&SimpleRequest::new("GET", "/")));
        // Repeated headers are seen joined with ','.
        let mut re = RouteMatch::any();
        re.headers.push(NamedMatch {
            name: "x".into(),
            value: ValueMatch::RegularExpression(Pattern::new("a,b").unwrap()),
        });
        let req = SimpleRequest::new("GET", "/")
            .header("x", "a")
            .header("X", "b");
        assert!(re.matches(&req));
    }

    #[test]
    fn query_params_and_method() {
        let mut rm = RouteMatch::any();
        rm.query_params.push(NamedMatch {
            name: "animal".into(),
            value: ValueMatch::Exact("whale".into()),
        });
        rm.method = Some("GET".into());
        assert!(rm.matches(&SimpleRequest::new("GET", "/?animal=whale&x=1")));
        assert!(rm.matches(&SimpleRequest::new("GET", "/?x=1&animal=whale")));
        assert!(!rm.matches(&SimpleRequest::new("GET", "/?animal=whaledolphin")));
        assert!(!rm.matches(&SimpleRequest::new("GET", "/?Animal=whale")));
        assert!(!rm.matches(&SimpleRequest::new("GET", "/")));
        assert!(!rm.matches(&SimpleRequest::new("POST", "/?animal=whale")));
        assert_eq!(query_param("a&b=2", "a"), Some(""));
        assert_eq!(query_param("a=1&a=2", "a"), Some("1"), "first value");
    }
}
