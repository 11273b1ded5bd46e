//! Istio AuthorizationPolicy and PeerAuthentication objects -> validated `mesh-api` policies.
//!
//! Invalid policies fail closed, never open: a policy that cannot be understood becomes an ALLOW policy with no
//! rules for the same scope (which denies every connection to the workloads it selects), and an invalid
//! PeerAuthentication becomes STRICT for its scope. A warning names the object and the field at fault.

use mesh_api::Policy;
use mesh_api::authz::AuthorizationPolicySpec;
use mesh_api::model::WorkloadSelector;
use mesh_api::peer_auth::{MtlsSpec, PeerAuthMode, PeerAuthentication, PeerAuthenticationSpec};

use super::{Warning, ns_name};
use crate::objects::Generic;

/// The validated policy of `obj`, or its fail-closed replacement (with a warning).
pub fn authorization_policy(obj: &Generic, warnings: &mut Vec<Warning>) -> Option<Policy> {
    let (ns, name) = ns_name(&obj.metadata);
    let object = format!("AuthorizationPolicy {ns}/{name}");
    let error = match serde_json::from_value::<AuthorizationPolicySpec>(obj.spec.clone()) {
        Ok(spec) => match Policy::from_spec(name, ns, spec) {
            Ok(p) => return Some(p),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    // Policies attached to a waypoint (targetRefs) are the waypoint's to enforce; the waypoint config reports them.
    if has_target_refs(&obj.spec) {
        warnings.push(Warning::new(
            object,
            format!("invalid, not sent to waypoints: {error}"),
        ));
        return None;
    }
    let fallback = AuthorizationPolicySpec {
        selector: selector(&obj.spec),
        ..Default::default()
    };
    match Policy::from_spec(name, ns, fallback) {
        Ok(p) => {
            warnings.push(Warning::new(
                object,
                format!("invalid, enforced as deny-all for the workloads it selects until fixed: {error}"),
            ));
            Some(p)
        }
        Err(e) => {
            warnings.push(Warning::new(
                object,
                format!("invalid and cannot be enforced at all: {error}; {e}"),
            ));
            None
        }
    }
}

/// The validated PeerAuthentication of `obj`, or STRICT for its scope (with a warning).
pub fn peer_authentication(
    obj: &Generic,
    warnings: &mut Vec<Warning>,
) -> Option<PeerAuthentication> {
    let (ns, name) = ns_name(&obj.metadata);
    let object = format!("PeerAuthentication {ns}/{name}");
    let error = match serde_json::from_value::<PeerAuthenticationSpec>(obj.spec.clone()) {
        Ok(spec) => match PeerAuthentication::from_spec(name, ns, spec) {
            Ok(p) => return Some(p),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let fallback = PeerAuthenticationSpec {
        selector: selector(&obj.spec),
        mtls: Some(MtlsSpec {
            mode: PeerAuthMode::Strict,
        }),
        ..Default::default()
    };
    match PeerAuthentication::from_spec(name, ns, fallback) {
        Ok(p) => {
            warnings.push(Warning::new(
                object,
                format!("invalid, enforced as STRICT until fixed: {error}"),
            ));
            Some(p)
        }
        Err(e) => {
            warnings.push(Warning::new(
                object,
                format!("invalid and cannot be enforced at all: {error}; {e}"),
            ));
            None
        }
    }
}

fn has_target_refs(spec: &serde_json::Value) -> bool {
    spec.get("targetRef").is_some_and(|v| !v.is_null())
        || spec
            .get("targetRefs")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty())
}

/// The selector of a spec, if it parses on its own (`None` = the whole namespace).
fn selector(spec: &serde_json::Value) -> Option<WorkloadSelector> {
    let sel = spec.get("selector")?;
    serde_json::from_value::<WorkloadSelector>(sel.clone())
        .ok()
        .filter(|s| s.validate().is_ok())
}
