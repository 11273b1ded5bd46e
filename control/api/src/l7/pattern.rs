//! Compiled regular expressions and string matchers of routes.

use std::fmt;

use serde::{Serialize, Serializer};

/// Largest compiled program a route regex may produce: a guard against patterns that would make
/// every request slow or the proxy big (RE2/Envoy use a similar program-size limit).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A regular expression matched against a whole value (anchored at both ends, like Envoy's
/// `safe_regex` full match). Syntax: Rust `regex` (RE2-like; no backreferences/lookaround).
#[derive(Clone)]
pub struct Pattern {
    source: String,
    re: regex::Regex,
}

impl Pattern {
    /// Compiles `source`; the error says why it is not a valid pattern.
    pub fn new(source: &str) -> Result<Self, String> {
        let re = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regular expression {source:?}: {e}"))?;
        Ok(Self {
            source: source.to_owned(),
            re,
        })
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.re.is_match(value)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// How a header, query parameter or gRPC name is compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum ValueMatch {
    /// Equal (case-sensitive).
    Exact(String),
    /// Full match of a regular expression.
    RegularExpression(Pattern),
    /// Starts with (Istio `prefix`).
    Prefix(String),
}

impl ValueMatch {
    /// `type` (`Exact` default, `RegularExpression`) and `value` of a Gateway API match.
    pub fn parse(kind: Option<&str>, value: &str) -> Result<Self, String> {
        match kind.unwrap_or("Exact") {
            "Exact" => Ok(Self::Exact(value.to_owned())),
            "RegularExpression" => Pattern::new(value).map(Self::RegularExpression),
            other => Err(format!(
                "unsupported match type {other:?}; use Exact or RegularExpression"
            )),
        }
    }

    /// Whether `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => v == value,
            Self::RegularExpression(p) => p.is_match(value),
            Self::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_values_only() {
        let p = Pattern::new("/v[0-9]+").unwrap();
        assert!(p.is_match("/v12"));
        assert!(!p.is_match("/v12/x"), "anchored at the end");
        assert!(!p.is_match("x/v1"), "anchored at the start");
        let alt = Pattern::new("a|b").unwrap();
        assert!(alt.is_match("a") && alt.is_match("b") && !alt.is_match("ab"));
    }

    #[test]
    fn invalid_patterns_are_rejected_with_the_reason() {
        let err = Pattern::new("/v(").unwrap_err();
        assert!(err.contains("invalid regular expression \"/v(\""), "{err}");
        let err = ValueMatch::parse(Some("Prefix"), "x").unwrap_err();
        assert!(err.contains("Exact or RegularExpression"), "{err}");
    }

    #[test]
    fn exact_is_the_default_and_case_sensitive() {
        let m = ValueMatch::parse(None, "One").unwrap();
        assert!(m.is_match("One"));
        assert!(!m.is_match("one"));
    }
}
