//! What filters do to a request or response, as pure functions: header edits, the `Location` of
//! a redirect, the rewritten path and host.

use super::route::{HeaderModifier, PathMatch, PathModifier, Redirect, UrlRewrite};

/// Header storage a [`HeaderModifier`] edits. Names given are lower case and valid; values are
/// valid header values (checked when the route was validated).
pub trait HeaderEdit {
    /// Replaces every value of `name` with `value`.
    fn set_header(&mut self, name: &str, value: &str);
    /// Appends `value` as a further field of `name`.
    fn append_header(&mut self, name: &str, value: &str);
    /// Removes every value of `name`.
    fn remove_header(&mut self, name: &str);
}

impl HeaderEdit for Vec<(String, String)> {
    fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.push((name.to_owned(), value.to_owned()));
    }
    fn append_header(&mut self, name: &str, value: &str) {
        self.push((name.to_owned(), value.to_owned()));
    }
    fn remove_header(&mut self, name: &str) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

impl HeaderModifier {
    /// Applies set, then add, then remove.
    pub fn apply(&self, headers: &mut dyn HeaderEdit) {
        for (n, v) in &self.set {
            headers.set_header(n, v);
        }
        for (n, v) in &self.add {
            headers.append_header(n, v);
        }
        for n in &self.remove {
            headers.remove_header(n);
        }
    }
}

/// The parts of the request a redirect or rewrite starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    /// `http` (the waypoint only sees plaintext HTTP inside the tunnel).
    pub scheme: &'a str,
    /// Host from `Host` / `:authority`, without port.
    pub host: &'a str,
    /// The port the client addressed (the service port).
    pub port: u16,
    /// Path without query.
    pub path: &'a str,
    /// Query without `?`.
    pub query: Option<&'a str>,
}

/// `path` with the matched prefix replaced (Gateway API `ReplacePrefixMatch` semantics:
/// `/foo` + `/foo/bar` -> `/xyz/bar`; replacing with `/` strips the prefix; an empty result is
/// `/`). `prefix` and `replacement` carry no trailing slash (`""` stands for `/`).
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let mut out = format!("{replacement}{rest}");
    if out.is_empty() {
        out.push('/');
    } else if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// The new path for `modifier`, given the path match that selected the rule.
pub fn modified_path(modifier: &PathModifier, matched: &PathMatch, path: &str) -> String {
    match modifier {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let prefix = match matched {
                PathMatch::Prefix(p) if p != "/" => p.as_str(),
                PathMatch::RawPrefix(p) => p.as_str(),
                // Validation allows ReplacePrefixMatch only after a PathPrefix match.
                _ => "",
            };
            replace_prefix(path, prefix, replacement)
        }
    }
}

/// The default port of `scheme` (omitted from `Location`).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Redirect {
    /// The `Location` of the redirect: scheme, host, port and path from the filter where set,
    /// else from the request; a changed scheme without port uses that scheme's default port; the
    /// port is left out when it is the scheme's default. The query is kept.
    pub fn location(&self, req: &RequestTarget<'_>, matched: &PathMatch) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = self.hostname.as_deref().unwrap_or(req.host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(s)) => default_port(s),
            (None, None) => Some(req.port),
        };
        let path = match &self.path {
            Some(m) => modified_path(m, matched, req.path),
            None => req.path.to_owned(),
        };
        let mut loc = format!("{scheme}://{host}");
        if let Some(p) = port.filter(|p| Some(*p) != default_port(scheme)) {
            loc.push_str(&format!(":{p}"));
        }
        loc.push_str(&path);
        if let Some(q) = req.query {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

impl UrlRewrite {
    /// The path (with the original query) to send upstream, if the filter changes it.
    pub fn rewritten_target(&self, req: &RequestTarget<'_>, matched: &PathMatch) -> Option<String> {
        let m = self.path.as_ref()?;
        let mut p = modified_path(m, matched, req.path);
        if let Some(q) = req.query {
            p.push('?');
            p.push_str(q);
        }
        Some(p)
    }
}

#[cfg(test)]
#[path = "filters/tests.rs"]
mod tests;
