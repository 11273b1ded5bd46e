//! The route model's views of hyper's request and header types.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use mesh_api::l7::{HeaderEdit, RequestView};

/// Matching view of a request head.
pub struct View<'a> {
    /// The request head.
    pub parts: &'a http::request::Parts,
}

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }
    fn path(&self) -> &str {
        self.parts.uri.path()
    }
    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        joined(&self.parts.headers, name)
    }
}

/// Every value of `name`, joined with `,` (`None` when absent; non-UTF-8 bytes replaced).
pub fn joined<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let first = String::from_utf8_lossy(first.as_bytes());
    let rest: Vec<Cow<'_, str>> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect();
    if rest.is_empty() {
        return Some(first);
    }
    let mut all = first.into_owned();
    for v in rest {
        all.push(',');
        all.push_str(&v);
    }
    Some(Cow::Owned(all))
}

/// Edits a hyper header map. Names and values were validated with the route; an invalid one is
/// skipped with a warning rather than failing the request.
pub struct Edit<'a>(pub &'a mut HeaderMap);

fn name_value(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .ok()
        .zip(HeaderValue::from_str(value).ok());
    if parsed.is_none() {
        tracing::warn!(name, value, "skipping an invalid header edit");
    }
    parsed
}

impl HeaderEdit for Edit<'_> {
    fn set_header(&mut self, name: &str, value: &str) {
        if let Some((n, v)) = name_value(name, value) {
            self.0.insert(n, v);
        }
    }
    fn append_header(&mut self, name: &str, value: &str) {
        if let Some((n, v)) = name_value(name, value) {
            self.0.append(n, v);
        }
    }
    fn remove_header(&mut self, name: &str) {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            self.0.remove(n);
        }
    }
}

/// The request's authority: URI authority (HTTP/2) or `Host` (HTTP/1.1), as sent.
pub fn authority(parts: &http::request::Parts) -> Option<String> {
    if let Some(a) = parts.uri.authority() {
        return Some(a.as_str().to_owned());
    }
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether the request is gRPC (`content-type: application/grpc...`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_with_commas() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(joined(&h, "x-a").as_deref(), Some("1,2"));
        assert_eq!(joined(&h, "X-A").as_deref(), Some("1,2"));
        assert!(joined(&h, "x-b").is_none());
    }

    #[test]
    fn edits_set_append_and_remove() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("old"));
        let mut e = Edit(&mut h);
        e.set_header("x-a", "new");
        e.append_header("x-a", "more");
        e.append_header("x-b", "b");
        e.remove_header("x-b");
        e.set_header("bad name", "x");
        let got: Vec<_> = h.get_all("x-a").iter().collect();
        assert_eq!(got, ["new", "more"]);
        assert!(h.get("x-b").is_none());
    }

    #[test]
    fn ports_are_stripped_from_authorities() {
        assert_eq!(strip_port("echo:80"), "echo");
        assert_eq!(strip_port("echo"), "echo");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
