//! Kubernetes service-account tokens, checked with a TokenReview (`authentication.k8s.io/v1`). The caller is
//! the service account of `system:serviceaccount:<ns>:<sa>`; bound pod tokens also name the pod's node
//! (`authentication.kubernetes.io/node-name`), which the CA and the config stream require of ztunnels.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

use super::{AuthError, AuthFuture, Authenticator, Caller};

/// Extra field of bound service-account tokens naming the node of the pod.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// Audience ztunnel tokens are requested for (Istio's).
pub const AUDIENCE: &str = "istio-ca";

/// Authenticates with the API server's TokenReview.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
}

impl TokenReviewer {
    /// Reviews through `client`; tokens must be valid for one of `audiences` (empty: the API server's default).
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self { client, audiences }
    }

    async fn review(&self, token: &str) -> Result<Caller, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let done = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|_| AuthError::Invalid("the API server could not review the token"))?;
        from_status(done)
    }
}

/// The caller a reviewed token stands for.
pub fn from_status(review: TokenReview) -> Result<Caller, AuthError> {
    let status = review
        .status
        .ok_or(AuthError::Invalid("TokenReview returned no status"))?;
    if status.authenticated != Some(true) {
        return Err(AuthError::Invalid(
            "the API server did not authenticate the token",
        ));
    }
    let user = status
        .user
        .ok_or(AuthError::Invalid("TokenReview returned no user"))?;
    let name = user.username.unwrap_or_default();
    let mut parts = name
        .strip_prefix("system:serviceaccount:")
        .unwrap_or_default()
        .splitn(2, ':');
    let (Some(ns), Some(sa)) = (
        parts.next().filter(|s| !s.is_empty()),
        parts.next().filter(|s| !s.is_empty()),
    ) else {
        return Err(AuthError::Invalid(
            "the token is not a service-account token",
        ));
    };
    let node = user
        .extra
        .and_then(|e| e.get(NODE_NAME_EXTRA).and_then(|v| v.first().cloned()));
    Ok(Caller {
        namespace: ns.to_string(),
        service_account: sa.to_string(),
        node,
    })
}

impl Authenticator for TokenReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(self.review(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(v: serde_json::Value) -> TokenReview {
        serde_json::from_value(serde_json::json!({"spec": {}, "status": v})).expect("review")
    }

    #[test]
    fn service_account_and_node_come_from_the_review() {
        let r = review(serde_json::json!({"authenticated": true, "user": {
            "username": "system:serviceaccount:istio-system:ztunnel",
            "extra": {NODE_NAME_EXTRA: ["node-1"]}}}));
        assert_eq!(
            from_status(r).expect("caller"),
            Caller {
                namespace: "istio-system".into(),
                service_account: "ztunnel".into(),
                node: Some("node-1".into())
            }
        );
        for bad in [
            serde_json::json!({"authenticated": false}),
            serde_json::json!({"authenticated": true, "user": {"username": "alice"}}),
            serde_json::json!({"authenticated": true, "user": {"username": "system:serviceaccount:ns"}}),
        ] {
            assert!(from_status(review(bad.clone())).is_err(), "{bad}");
        }
    }
}
