//! Validation of Kubernetes names, labels and SPIFFE identity parts.

use super::FieldError;

/// Longest DNS-1123 label (namespaces, service names, label names).
const MAX_LABEL: usize = 63;
/// Longest DNS-1123 subdomain (pod names, service accounts, label-key prefixes).
const MAX_SUBDOMAIN: usize = 253;
/// Longest SPIFFE trust domain.
const MAX_TRUST_DOMAIN: usize = 255;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Checks a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 chars), e.g. a namespace.
pub fn dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_LABEL {
        return Err(format!("{value:?} must be 1 to {MAX_LABEL} characters"));
    }
    let ok = value.chars().all(|c| is_lower_alnum(c) || c == '-')
        && value.starts_with(is_lower_alnum)
        && value.ends_with(is_lower_alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// Checks a DNS-1123 subdomain (dot-separated labels, at most 253 chars), e.g. a pod name.
pub fn dns_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_SUBDOMAIN {
        return Err(format!("{value:?} must be 1 to {MAX_SUBDOMAIN} characters"));
    }
    let ok = value.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| is_lower_alnum(c) || c == '-')
            && part.starts_with(is_lower_alnum)
            && part.ends_with(is_lower_alnum)
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a DNS-1123 subdomain: use lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit"
        ))
    }
}

fn label_name_chars(value: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    value
        .chars()
        .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && value.starts_with(alnum)
        && value.ends_with(alnum)
}

/// Checks a label key: `[prefix/]name`, prefix a DNS subdomain, name up to 63 chars of
/// `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|e| format!("label key {key:?}: prefix {e}"))?;
    }
    if name.is_empty() || name.len() > MAX_LABEL || !label_name_chars(name) {
        return Err(format!(
            "label key {key:?}: name must be 1 to {MAX_LABEL} characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or up to 63 chars like a label name.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_LABEL || !label_name_chars(value) {
        return Err(format!(
            "label value {value:?} must be at most {MAX_LABEL} characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks every key and value of a label map (a `&BTreeMap` or `&Labels`); the error's field is the
/// offending key.
pub fn validate_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), FieldError> {
    for (k, v) in labels {
        label_key(k).map_err(|e| FieldError::new(k.as_str(), e))?;
        label_value(v).map_err(|e| FieldError::new(k.as_str(), e))?;
    }
    Ok(())
}

/// Checks a SPIFFE trust domain: lowercase letters, digits, '.', '-' and '_'.
pub fn trust_domain(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TRUST_DOMAIN
        && value
            .chars()
            .all(|c| is_lower_alnum(c) || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a SPIFFE trust domain: use 1 to {MAX_TRUST_DOMAIN} lowercase letters, digits, '.', '-' and '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "default", "istio-system", "a1", &"a".repeat(63)] {
            assert!(dns_label(ok).is_ok(), "{ok} rejected");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dns_subdomains() {
        for ok in ["a", "client-1", "a.b.c", "echo-v1-7d9f"] {
            assert!(dns_subdomain(ok).is_ok(), "{ok} rejected");
        }
        for bad in ["", ".a", "a.", "a..b", "A", "a_b", "-a.b"] {
            assert!(dns_subdomain(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn labels() {
        for ok in ["app", "app.kubernetes.io/name", "Version_2", "a-b.c"] {
            assert!(label_key(ok).is_ok(), "{ok} rejected");
        }
        for bad in [
            "",
            "/app",
            "a/",
            "-app",
            "app-",
            "a/b/c",
            "bad prefix/x",
            "a b",
        ] {
            assert!(label_key(bad).is_err(), "{bad} accepted");
        }
        for ok in ["", "v1", "A.b-c_d"] {
            assert!(label_value(ok).is_ok(), "{ok} rejected");
        }
        for bad in ["-v1", "v1-", "a b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn trust_domains() {
        assert!(trust_domain("cluster.local").is_ok());
        assert!(trust_domain("my_td-2.example").is_ok());
        for bad in ["", "Cluster.local", "td/x", "td:1"] {
            assert!(trust_domain(bad).is_err(), "{bad} accepted");
        }
    }
}
