//! L7 authorization of a request: the AuthorizationPolicies that target the waypoint, the
//! destination service or the `istio-waypoint` class (from the mesh config and the routes
//! directory), evaluated with every HTTP attribute.

use http::request::Parts;
use mesh_api::PeerIdentity;
use mesh_api::authz::Decision;
use mesh_api::l7::authz::{self, HttpAttrs};

use super::request::View;
use super::{Downstream, Proxy};
use crate::authn::Authenticated;
use crate::resolve::Target;
use crate::state::{Mesh, Routes};

impl Proxy {
    /// `Err(reason)` when a policy denies the request (the reason names the deciding policy, or
    /// the ALLOW policies that were tried). The AUDIT policies that match are written to
    /// `audit` (whatever the decision): they are logged, never enforced.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn authorize(
        &self,
        down: &Downstream,
        parts: &Parts,
        host: &str,
        mesh: &Mesh,
        routes: &Routes,
        jwt: Option<&Authenticated>,
        audit: &mut Option<String>,
    ) -> Result<(), String> {
        let service = match &down.target {
            Target::Service {
                namespace, name, ..
            } => Some((namespace.as_str(), name.as_str())),
            Target::Workload { .. } => None,
        };
        let gateway = (self.gateway.0.as_str(), self.gateway.1.as_str());
        let root = mesh.snapshot.root_namespace();
        let mut policies = authz::applicable(
            &mesh.snapshot.parts().authorization_policies,
            root,
            gateway,
            service,
        );
        policies.extend(authz::applicable(&routes.policies, root, gateway, service));
        let audits = authz::applicable(&routes.audit_policies, root, gateway, service);
        if policies.is_empty() && audits.is_empty() {
            return Ok(());
        }
        let peer = PeerIdentity::new(
            &down.peer.trust_domain,
            &down.peer.namespace,
            &down.peer.service_account,
        );
        let attrs = HttpAttrs {
            src_identity: Some(&peer),
            src_ip: down.client.ip(),
            dst_ip: down.authority.ip(),
            dst_port: down.authority.port(),
            host,
            request_principal: jwt.map(|j| j.principal.as_str()),
            claims: jwt.map(|j| &j.claims),
        };
        if !audits.is_empty() {
            let hits = authz::audited(&audits, &attrs, &View { parts });
            if !hits.is_empty() {
                let names: Vec<String> = hits.iter().map(ToString::to_string).collect();
                *audit = Some(names.join(","));
            }
        }
        match authz::evaluate(&policies, &attrs, &View { parts }) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(reason.to_string()),
        }
    }

    /// JWT authentication by the RequestAuthentications that apply: `Err(reason)` for a token no
    /// rule accepts (401), `Ok(None)` without a token.
    pub(super) async fn authenticate(
        &self,
        down: &Downstream,
        parts: &mut Parts,
        mesh: &Mesh,
        routes: &Routes,
    ) -> Result<Option<Authenticated>, String> {
        let service = match &down.target {
            Target::Service {
                namespace, name, ..
            } => Some((namespace.as_str(), name.as_str())),
            Target::Workload { .. } => None,
        };
        let gateway = (self.gateway.0.as_str(), self.gateway.1.as_str());
        let root = mesh.snapshot.root_namespace();
        let rules: Vec<_> = routes
            .authentications
            .iter()
            .filter(|a| a.applies(root, gateway, service))
            .flat_map(|a| a.rules.iter())
            .collect();
        if rules.is_empty() {
            return Ok(None);
        }
        self.authn.authenticate(&rules, parts).await
    }
}
