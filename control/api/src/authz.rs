//! Istio `AuthorizationPolicy` for ztunnel: the wire shape ([`spec`]), the validated
//! [`Policy`], and L4 evaluation ([`evaluate`]).
//!
//! Scope (which policies apply to a workload) is computed by `ConfigSnapshot::policies_for`:
//! a policy in the root namespace without selector applies mesh-wide; one in another namespace
//! without selector applies to that namespace; one with a selector applies to the matching
//! workloads of its namespace (of every namespace when in the root namespace). Policies with
//! `targetRefs` are enforced by the waypoint they attach to, never by ztunnel.

mod convert;
mod eval;
pub(crate) mod l4;
mod matchers;
mod policy;
pub mod spec;

pub use eval::{ConnAttrs, Decision, DenyReason, evaluate};
pub use matchers::{ServiceAccountMatch, StringMatch, ip_in, parse_ip_block, parse_port};
pub use policy::{
    Action, Condition, ConditionTest, Operation, Policy, PolicyError, PolicyRef, Rule, Source,
    Values,
};
pub use spec::{AuthorizationPolicyResource, AuthorizationPolicySpec};

pub use crate::identity::{PeerIdentity, SpiffeIdLike};

#[cfg(test)]
mod tests;
