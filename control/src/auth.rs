//! Who is calling: callers send a service-account token (`authorization: Bearer <token>`). In local mode tokens
//! are issued by control itself ([`LocalTokens`], HMAC-SHA256 over the claims with a key only control and
//! `mesh-control token` read); in Kubernetes with a TokenReview ([`token_review`]).

pub mod token_review;

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix of local-mode tokens (format version).
const TOKEN_PREFIX: &str = "mesh1";
/// Bytes of a generated token key.
const KEY_LEN: usize = 32;

/// Why a caller is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer` header.
    #[error("no bearer token: send `authorization: Bearer <service-account token>`")]
    Missing,
    /// The token is not one control issued, or it was altered.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The key file could not be read or written.
    #[error("token key {0}: {1}; check that control's state directory is writable")]
    Key(String, std::io::Error),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Namespace of the caller's service account.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Node the caller's pod runs on, when the token is bound to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A future of an authentication.
pub type AuthFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, AuthError>> + Send + 'a>>;

/// Checks tokens.
pub trait Authenticator: Send + Sync + 'static {
    /// The caller a bearer token stands for.
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// The authenticated caller of a gRPC request (`unauthenticated` status otherwise).
pub async fn caller(
    auth: &dyn Authenticator,
    meta: &tonic::metadata::MetadataMap,
) -> Result<Caller, tonic::Status> {
    let token = bearer(meta).map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
    auth.authenticate(token)
        .await
        .map_err(|e| tonic::Status::unauthenticated(e.to_string()))
}

/// Local-mode tokens: `mesh1.<claims>.<hmac>`, both parts base64url.
#[derive(Clone)]
pub struct LocalTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalTokens { key: <redacted> }")
    }
}

impl LocalTokens {
    /// Tokens signed with `key`.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// Loads the key from `path`, creating a random one (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        let err = |e| AuthError::Key(path.display().to_string(), e);
        match std::fs::read(path) {
            Ok(key) if !key.is_empty() => return Ok(Self::new(key)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let key: [u8; KEY_LEN] = rand::random();
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        std::io::Write::write_all(&mut f, &key).map_err(err)?;
        Ok(Self::new(key.to_vec()))
    }

    /// A token for `caller`.
    pub fn issue(&self, caller: &Caller) -> String {
        // Serializing a struct of strings cannot fail.
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(caller).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&claims).finalize().into_bytes());
        format!("{TOKEN_PREFIX}.{claims}.{sig}")
    }

    fn mac(&self, claims: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(TOKEN_PREFIX.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        mac
    }
}

impl Authenticator for LocalTokens {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.verify(token)))
    }
}

impl LocalTokens {
    /// The caller of a token this key issued.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let mut parts = token.trim().split('.');
        let (Some(TOKEN_PREFIX), Some(claims), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid(
                "not a local-mode token (mesh1.<claims>.<signature>)",
            ));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::Invalid("signature is not base64url"))?;
        self.mac(claims)
            .verify_slice(&sig)
            .map_err(|_| AuthError::Invalid("signature does not match"))?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| AuthError::Invalid("claims are not base64url"))?;
        serde_json::from_slice(&claims).map_err(|_| AuthError::Invalid("claims are not valid JSON"))
    }
}

/// The bearer token of a gRPC request.
pub fn bearer(meta: &tonic::metadata::MetadataMap) -> Result<&str, AuthError> {
    meta.get(mesh_xds::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            namespace: "istio-system".into(),
            service_account: "ztunnel".into(),
            node: Some("node-1".into()),
        }
    }

    #[test]
    fn issued_tokens_authenticate_and_tampering_is_refused() {
        let tokens = LocalTokens::new(b"k".to_vec());
        let t = tokens.issue(&caller());
        assert_eq!(tokens.verify(&t).expect("valid"), caller());
        let other = LocalTokens::new(b"other".to_vec());
        assert!(other.verify(&t).is_err(), "another key");
        // Swap in claims for another node, keeping the signature.
        let forged = LocalTokens::new(b"x".to_vec()).issue(&Caller {
            node: Some("node-2".into()),
            ..caller()
        });
        let mixed = format!(
            "{}.{}.{}",
            TOKEN_PREFIX,
            forged.split('.').nth(1).expect("claims"),
            t.split('.').nth(2).expect("sig")
        );
        assert!(tokens.verify(&mixed).is_err(), "altered claims");
        for bad in ["", "mesh1.a", "jwt.a.b", "mesh1.a.b.c", "mesh1.!!.??"] {
            assert!(tokens.verify(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.key");
        let a = LocalTokens::load_or_create(&path).expect("create");
        let b = LocalTokens::load_or_create(&path).expect("load");
        assert_eq!(b.verify(&a.issue(&caller())).expect("same key"), caller());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
