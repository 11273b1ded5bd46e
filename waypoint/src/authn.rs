//! JWT authentication (RequestAuthentication): find the token, verify it against the rule of its
//! issuer (signature with the JWKS key, `exp`/`nbf`, audiences), then expose the principal and
//! claims to authorization and copy claims into headers. JWKS documents given by URL are fetched
//! (`http://` or `https://`, verified against the system roots plus `--jwks-ca`), cached for
//! [`JWKS_TTL`] and kept when a refresh fails.
//!
//! Signatures are checked by the rustls crypto provider (BoringSSL in the `fips` build), see
//! [`crypto`]; which token algorithms and keys go together is decided in [`policy`].

mod crypto;
mod fetch;
mod policy;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use mesh_api::l7::authn::{Jwks, JwtRule};
use mesh_api::l7::matching::query_param;

/// How long a fetched JWKS is used before it is fetched again.
pub const JWKS_TTL: Duration = Duration::from_secs(300);
/// Clock skew tolerated on `exp` and `nbf` (Istio uses 60 s too).
const LEEWAY_SECS: u64 = 60;

/// A verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// `<iss>/<sub>`.
    pub principal: String,
    /// Every claim.
    pub claims: serde_json::Value,
}

/// Verifies tokens; caches JWKS documents by URL.
#[derive(Debug, Default)]
pub struct Authenticator {
    cache: Mutex<HashMap<String, (Arc<JwkSet>, Instant)>>,
    /// Extra CA (PEM file) for `https` jwksUri servers, besides the system roots.
    jwks_ca: Option<PathBuf>,
    /// TLS client settings of `https` fetches, built on first use (or at start with a CA).
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

/// The token of a request for `rule`, and where it was (header name, if in a header).
fn find_token(rule: &JwtRule, parts: &Parts) -> Option<(String, Option<String>)> {
    for (name, prefix) in &rule.from_headers {
        for v in parts.headers.get_all(name.as_str()) {
            let v = v.to_str().ok()?;
            if let Some(t) = v.strip_prefix(prefix.as_str()) {
                return Some((t.trim().to_owned(), Some(name.clone())));
            }
        }
    }
    let query = parts.uri.query()?;
    rule.from_params
        .iter()
        .find_map(|p| query_param(query, p))
        .map(|t| (t.to_owned(), None))
}

/// The `iss` of a token, read without verification (to choose the rule).
fn issuer_of(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["iss"].as_str().map(str::to_owned)
}

fn claim_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

impl Authenticator {
    /// An authenticator trusting the system roots plus `jwks_ca` for `https` jwksUri servers.
    /// A given CA file is checked now: an unreadable or empty one is an error.
    pub fn new(jwks_ca: Option<PathBuf>) -> Result<Self, String> {
        let me = Self {
            jwks_ca,
            ..Self::default()
        };
        crypto::install()?;
        if me.jwks_ca.is_some() {
            me.tls_config()?;
        }
        Ok(me)
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| fetch::tls_config(self.jwks_ca.as_deref()))
            .clone()
    }

    async fn keys(&self, jwks: &Jwks) -> Result<Arc<JwkSet>, String> {
        let url = match jwks {
            Jwks::Inline(text) => {
                return serde_json::from_str(text)
                    .map(Arc::new)
                    .map_err(|e| format!("inline JWKS is invalid: {e}"));
            }
            Jwks::Uri(u) => u,
        };
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .cloned();
        if let Some((set, at)) = &cached
            && at.elapsed() < JWKS_TTL
        {
            return Ok(set.clone());
        }
        match fetch::jwks(url, || self.tls_config()).await {
            Ok(set) => {
                let set = Arc::new(set);
                let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                c.insert(url.clone(), (set.clone(), Instant::now()));
                Ok(set)
            }
            Err(e) => match cached {
                Some((stale, _)) => {
                    tracing::warn!(url, error = %e, "JWKS refresh failed; keeping the previous keys");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    async fn verify(&self, rule: &JwtRule, token: &str) -> Result<serde_json::Value, String> {
        crypto::install()?;
        let alg = policy::token_algorithm(token)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let keys = self.keys(&rule.jwks).await?;
        let candidates: Vec<_> = match &header.kid {
            Some(kid) => keys.find(kid).into_iter().collect(),
            None => keys.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(format!(
                "no key of issuer {} matches the token",
                rule.issuer
            ));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&rule.issuer]);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.required_spec_claims = ["iss".to_owned()].into_iter().collect();
        if rule.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&rule.audiences);
        }
        let mut errors = Vec::new();
        for (i, jwk) in candidates.into_iter().enumerate() {
            let name = jwk
                .common
                .key_id
                .as_ref()
                .map_or_else(|| format!("#{i}"), |k| format!("{k:?}"));
            let checked = policy::key_fits(jwk, alg)
                .and_then(|()| DecodingKey::from_jwk(jwk).map_err(|e| e.to_string()))
                .and_then(|key| {
                    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(data) => return Ok(data.claims),
                Err(e) => errors.push(format!("key {name}: {e}")),
            }
        }
        Err(errors.join(", "))
    }

    /// Authenticates the request against `rules`: `Ok(None)` without a token, `Err(reason)` when
    /// a token is present but no rule accepts it (answer 401).
    pub async fn authenticate(
        &self,
        rules: &[&JwtRule],
        parts: &mut Parts,
    ) -> Result<Option<Authenticated>, String> {
        let mut tried = Vec::new();
        for rule in rules {
            let Some((token, header)) = find_token(rule, parts) else {
                continue;
            };
            if issuer_of(&token).as_deref() != Some(rule.issuer.as_str()) {
                tried.push(format!("issuer is not {}", rule.issuer));
                continue;
            }
            match self.verify(rule, &token).await {
                Ok(claims) => {
                    for (h, claim) in &rule.claim_headers {
                        if let Some(v) = claims.get(claim).and_then(claim_text)
                            && let Ok(v) = HeaderValue::from_str(&v)
                            && let Ok(name) = http::HeaderName::from_bytes(h.as_bytes())
                        {
                            parts.headers.insert(name, v);
                        }
                    }
                    if let (false, Some(h)) = (rule.forward_original_token, header) {
                        parts.headers.remove(h.as_str());
                    }
                    let sub = claims["sub"].as_str().unwrap_or_default();
                    return Ok(Some(Authenticated {
                        principal: format!("{}/{sub}", rule.issuer),
                        claims,
                    }));
                }
                Err(e) => tried.push(e),
            }
        }
        if tried.is_empty() {
            Ok(None)
        } else {
            Err(format!("Jwt verification fails: {}", tried.join("; ")))
        }
    }
}

#[cfg(test)]
#[path = "authn/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "authn/alg_tests.rs"]
mod alg_tests;
