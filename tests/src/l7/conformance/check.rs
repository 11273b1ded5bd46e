//! Comparing an answer with a case's expectations (EXPECTATIONS.md 3.4), strictly: what upstream
//! enforces in mesh mode plus the declared backend path, namespace and redirect target.

use std::collections::BTreeMap;

use super::super::HttpResult;
use super::{Case, Weights};

/// Backend name of a pod for weighted tests: the pod name without its last two `-` parts.
pub fn backend_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    parts[..parts.len().saturating_sub(2)].join("-")
}

/// Checks one answer against `case`; the error says what differs.
pub fn check_case(case: &Case, r: &HttpResult) -> Result<(), String> {
    let e = &case.expect;
    let want = e.status.unwrap_or(200);
    if r.status != want {
        return Err(format!(
            "status {} instead of {want}: {}",
            r.status,
            short(&r.body)
        ));
    }
    let json = r.json();
    let seen: BTreeMap<String, String> = json["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals: Vec<&str> = v
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    (k.to_ascii_lowercase(), vals.join(","))
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in &e.request_headers {
        match seen.get(&name.to_ascii_lowercase()) {
            Some(v) if v == value => {}
            other => return Err(format!("backend saw {name}: {other:?}, expected {value:?}")),
        }
    }
    for name in &e.request_headers_absent {
        if let Some(v) = seen.get(&name.to_ascii_lowercase()) {
            return Err(format!("backend saw {name}: {v:?}, expected none"));
        }
    }
    for name in &e.response_headers_absent {
        if let Some(v) = r.header(name) {
            return Err(format!("response carries {name}: {v:?}, expected none"));
        }
    }
    for (name, value) in &e.response_headers {
        if r.header(name) != Some(value.as_str()) {
            return Err(format!(
                "response header {name}: {:?}, expected {value:?}",
                r.header(name)
            ));
        }
    }
    if let Some(prefix) = &e.backend {
        let pod = json["pod"].as_str().unwrap_or_default();
        if !pod.starts_with(prefix.as_str()) {
            return Err(format!("answered by {pod:?}, expected {prefix}-*"));
        }
    }
    // Declared expectations (strict mode).
    if let (Some(ns), Some(pod_ns)) = (&e.namespace, json["namespace"].as_str())
        && ns != pod_ns
    {
        return Err(format!("answered from namespace {pod_ns}, expected {ns}"));
    }
    if let Some(path) = &e.backend_path {
        let seen = json["path"].as_str().unwrap_or_default();
        let seen = seen.split('?').next().unwrap_or_default();
        if seen != path {
            return Err(format!("backend saw path {seen:?}, expected {path:?}"));
        }
    }
    if let Some(redirect) = &e.redirect {
        check_location(redirect, r.header("location").unwrap_or_default())?;
    }
    Ok(())
}

fn check_location(want: &super::Redirect, location: &str) -> Result<(), String> {
    let (scheme, rest) = location
        .split_once("://")
        .ok_or_else(|| format!("Location {location:?} is not absolute"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('?').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()),
        None => (authority, None),
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let problems = [
        want.scheme
            .as_deref()
            .filter(|s| *s != scheme)
            .map(|s| format!("scheme {scheme}, expected {s}")),
        want.host
            .as_deref()
            .filter(|h| *h != host)
            .map(|h| format!("host {host}, expected {h}")),
        want.path
            .as_deref()
            .filter(|p| *p != path)
            .map(|p| format!("path {path}, expected {p}")),
        match (want.port, port) {
            (Some(w), Some(p)) if w == p => None,
            (Some(w), _) => Some(format!("port {port:?}, expected {w}")),
            (None, Some(p)) if p != default => Some(format!("port {p} present, expected none")),
            (None, _) => None,
        },
    ];
    match problems.into_iter().flatten().collect::<Vec<_>>() {
        p if p.is_empty() => Ok(()),
        p => Err(format!("Location {location:?}: {}", p.join(", "))),
    }
}

/// The weight distribution check of EXPECTATIONS.md 3.7.
pub fn check_weights(w: &Weights, answers: &[HttpResult]) -> Result<(), String> {
    if answers.len() != w.requests_per_attempt {
        return Err(format!(
            "{} answers, expected {}",
            answers.len(),
            w.requests_per_attempt
        ));
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let backend = backend_of(&a.pod());
        if !w.expected.contains_key(&backend) {
            return Err(format!(
                "unexpected backend {backend:?} (status {})",
                a.status
            ));
        }
        *counts.entry(backend).or_default() += 1;
    }
    let positive = w.expected.values().filter(|v| **v > 0.0).count();
    if counts.len() != positive {
        return Err(format!(
            "saw backends {counts:?}, expected {positive} of them"
        ));
    }
    for (b, share) in &w.expected {
        let got = *counts.get(b).unwrap_or(&0) as f64 / answers.len() as f64;
        if (got - share).abs() > w.tolerance {
            return Err(format!(
                "{b} got {got:.3} of the requests, expected {share} +- {}",
                w.tolerance
            ));
        }
    }
    Ok(())
}

fn short(s: &str) -> &str {
    &s[..s.len().min(200)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l7::conformance::Redirect;

    #[test]
    fn backend_names_drop_the_replicaset_and_pod_suffixes() {
        assert_eq!(backend_of("echo-v1-5d9c7b8f6-x2x9q"), "echo-v1");
        assert_eq!(backend_of(""), "");
    }

    #[test]
    fn locations_are_compared_part_by_part() {
        let want = Redirect {
            scheme: Some("http".into()),
            host: Some("example.org".into()),
            path: Some("/p".into()),
            port: Some(8083),
        };
        assert!(check_location(&want, "http://example.org:8083/p").is_ok());
        assert!(check_location(&want, "http://example.org/p").is_err());
        let no_port = Redirect { port: None, ..want };
        assert!(check_location(&no_port, "http://example.org/p?x=1").is_ok());
        assert!(check_location(&no_port, "http://example.org:80/p").is_ok());
        assert!(check_location(&no_port, "http://example.org:81/p").is_err());
    }
}
