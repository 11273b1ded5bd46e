//! Istio `RequestAuthentication` (JWT) for the waypoint: the wire shape and the validated rules.
//! Token verification itself (signatures, JWKS fetching) is the waypoint's: this crate has no
//! crypto.
//!
//! Semantics (Istio): a request without a token passes unauthenticated (an AuthorizationPolicy
//! may then require `requestPrincipals`); a request with a token that no rule accepts is refused
//! with 401; a valid token gives the request principal `<iss>/<sub>` and its claims.

use serde::{Deserialize, Serialize};

use super::convert::check_header_name;
use super::spec::ObjectMetaSpec;
use crate::authz::spec::TargetRefSpec;
use crate::model::FieldError;

/// A whole RequestAuthentication object.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RequestAuthenticationObject {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMetaSpec,
    /// `spec`.
    #[serde(default)]
    pub spec: RequestAuthenticationSpec,
}

/// `RequestAuthentication.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    /// Waypoint / Service targets.
    #[serde(default)]
    pub target_refs: Vec<TargetRefSpec>,
    /// Deprecated single target.
    #[serde(default)]
    pub target_ref: Option<TargetRefSpec>,
    /// JWT rules.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRuleSpec>,
}

/// `JWTRule`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRuleSpec {
    /// Expected `iss`.
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values (any of them); empty = not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS URL.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// JWKS document inline.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Where the token is (default `Authorization: Bearer <token>`).
    #[serde(default)]
    pub from_headers: Vec<HeaderLocationSpec>,
    /// Query parameters the token may be in.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Copy claims into request headers.
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeaderSpec>,
    /// Keep the token in the forwarded request.
    #[serde(default)]
    pub forward_original_token: bool,
}

/// `JWTHeader`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HeaderLocationSpec {
    /// Header name.
    pub name: String,
    /// Prefix before the token (e.g. `Bearer `).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `ClaimToHeader`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClaimToHeaderSpec {
    /// Header to set.
    pub header: String,
    /// Claim to copy.
    pub claim: String,
}

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Jwks {
    /// A JWKS document given inline.
    Inline(String),
    /// A URL to fetch the document from (cached and refreshed by the waypoint).
    Uri(String),
}

/// A validated JWT rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// Expected issuer.
    pub issuer: String,
    /// Accepted audiences (empty = any).
    pub audiences: Vec<String>,
    /// Keys.
    pub jwks: Jwks,
    /// Header locations (lower-case name, prefix).
    pub from_headers: Vec<(String, String)>,
    /// Query parameter locations.
    pub from_params: Vec<String>,
    /// (header, claim) copies.
    pub claim_headers: Vec<(String, String)>,
    /// Whether the token is forwarded.
    pub forward_original_token: bool,
}

/// A validated RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthentication {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Targets (`Gateway`/`Service`/`GatewayClass`).
    pub target_refs: Vec<TargetRefSpec>,
    /// Rules.
    pub rules: Vec<JwtRule>,
}

/// Validates a RequestAuthentication.
pub fn request_authentication(
    obj: &RequestAuthenticationObject,
) -> Result<RequestAuthentication, FieldError> {
    let ns = obj
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut rules = Vec::new();
    for (i, r) in obj.spec.jwt_rules.iter().enumerate() {
        let f = |s: &str| format!("spec.jwtRules[{i}].{s}");
        if r.issuer.is_empty() {
            return Err(FieldError::new(f("issuer"), "an issuer is required"));
        }
        let jwks = match (&r.jwks, &r.jwks_uri) {
            (Some(j), None) => {
                serde_json::from_str::<serde_json::Value>(j)
                    .ok()
                    .filter(|v| v["keys"].is_array())
                    .ok_or_else(|| {
                        FieldError::new(
                            f("jwks"),
                            "not a JWKS document (JSON with a \"keys\" array)",
                        )
                    })?;
                Jwks::Inline(j.clone())
            }
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                Jwks::Uri(u.clone())
            }
            (None, Some(u)) => {
                return Err(FieldError::new(
                    f("jwksUri"),
                    format!("{u:?} is not an http(s) URL"),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(FieldError::new(f("jwks"), "set jwks or jwksUri, not both"));
            }
            (None, None) => {
                return Err(FieldError::new(f("jwksUri"), "jwks or jwksUri is required"));
            }
        };
        let mut from_headers = Vec::new();
        for (j, h) in r.from_headers.iter().enumerate() {
            check_header_name(&h.name)
                .map_err(|e| FieldError::new(f(&format!("fromHeaders[{j}].name")), e))?;
            from_headers.push((
                h.name.to_ascii_lowercase(),
                h.prefix.clone().unwrap_or_default(),
            ));
        }
        if from_headers.is_empty() && r.from_params.is_empty() {
            from_headers.push(("authorization".into(), "Bearer ".into()));
        }
        let mut claim_headers = Vec::new();
        for (j, c) in r.output_claim_to_headers.iter().enumerate() {
            check_header_name(&c.header)
                .map_err(|e| FieldError::new(f(&format!("outputClaimToHeaders[{j}].header")), e))?;
            claim_headers.push((c.header.to_ascii_lowercase(), c.claim.clone()));
        }
        rules.push(JwtRule {
            issuer: r.issuer.clone(),
            audiences: r.audiences.clone(),
            jwks,
            from_headers,
            from_params: r.from_params.clone(),
            claim_headers,
            forward_original_token: r.forward_original_token,
        });
    }
    let mut target_refs = obj.spec.target_refs.clone();
    target_refs.extend(obj.spec.target_ref.clone());
    Ok(RequestAuthentication {
        namespace: ns,
        name: obj.metadata.name.clone(),
        target_refs,
        rules,
    })
}

impl RequestAuthentication {
    /// Whether it applies to a request to `service` through the waypoint `gateway`.
    pub fn applies(
        &self,
        root_namespace: &str,
        gateway: (&str, &str),
        service: Option<(&str, &str)>,
    ) -> bool {
        self.target_refs.iter().any(|t| {
            let ns = t.namespace.as_deref().unwrap_or(&self.namespace);
            match t.kind.as_str() {
                "Gateway" => (ns, t.name.as_str()) == gateway,
                "Service" => Some((ns, t.name.as_str())) == service,
                "GatewayClass" => self.namespace == root_namespace && t.name == "istio-waypoint",
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RequestAuthentication, FieldError> {
        let obj: RequestAuthenticationObject = serde_yaml_ng::from_str(yaml).unwrap();
        request_authentication(&obj)
    }

    #[test]
    fn rules_get_default_locations_and_keep_their_settings() {
        let ra = parse(
            "metadata: {name: jwt, namespace: default}
spec:
  targetRefs: [{kind: Service, group: '', name: echo}]
  jwtRules:
  - issuer: https://issuer.example
    audiences: [echo]
    jwksUri: http://keys.example/jwks.json
    outputClaimToHeaders: [{header: X-Jwt-Sub, claim: sub}]
  - issuer: other
    jwks: '{\"keys\": []}'
    fromParams: [token]
",
        )
        .unwrap();
        assert_eq!(
            ra.rules[0].from_headers,
            vec![("authorization".to_owned(), "Bearer ".to_owned())]
        );
        assert_eq!(
            ra.rules[0].claim_headers,
            vec![("x-jwt-sub".to_owned(), "sub".to_owned())]
        );
        assert!(
            ra.rules[1].from_headers.is_empty(),
            "only the query parameter"
        );
        assert!(ra.applies(
            "istio-system",
            ("default", "waypoint"),
            Some(("default", "echo"))
        ));
        assert!(!ra.applies(
            "istio-system",
            ("default", "waypoint"),
            Some(("default", "other"))
        ));
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let bad = [
            ("jwtRules: [{jwksUri: http://x}]", "issuer"),
            ("jwtRules: [{issuer: i}]", "jwksUri"),
            (
                "jwtRules: [{issuer: i, jwks: 'nope'}]",
                "not a JWKS document",
            ),
            (
                "jwtRules: [{issuer: i, jwksUri: ftp://x}]",
                "not an http(s) URL",
            ),
        ];
        for (spec, want) in bad {
            let e = parse(&format!("metadata: {{name: j}}\nspec: {{{spec}}}")).unwrap_err();
            assert!(e.to_string().contains(want), "{spec}: {e}");
        }
    }
}
