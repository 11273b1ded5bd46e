//! Putting a pod in the mesh and taking it out: the redirect rules in its netns, the node's
//! probe-SNAT entry, and the handoff to ztunnel (DESIGN.md 4.3, 4.4).

use std::net::{IpAddr, Ipv4Addr};

use mesh_api::handoff::PodInfo;

use super::listeners::{self, ListenersError};
use crate::handoff_server::{Delivery, HandoffServer, HandoffServerError};
use crate::netns::{Netns, NetnsError};
use crate::rules::{self, Backend, CheckReport, RedirectOptions, RulesError};

/// Errors of enrolling or releasing a pod.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The pod's netns could not be used.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The rules could not be installed or removed.
    #[error("pod {pod}: {source}")]
    Rules {
        /// `namespace/name`.
        pod: String,
        /// The cause.
        source: RulesError,
    },
    /// ztunnel refused the pod or did not answer.
    #[error("pod {pod}: {source}")]
    Handoff {
        /// `namespace/name`.
        pod: String,
        /// The cause.
        source: HandoffServerError,
    },
    /// ztunnel is not connected to the handoff socket.
    #[error(
        "pod {pod}: ztunnel is not connected to the node agent (is the ztunnel on this node running?)"
    )]
    ZtunnelNotConnected {
        /// `namespace/name`.
        pod: String,
    },
    /// The listeners could not be checked.
    #[error(transparent)]
    Listeners(#[from] ListenersError),
}

/// What [`Enforcer::check`] found in an enrolled pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The rules report.
    pub rules: CheckReport,
    /// ztunnel's three listeners are open in the pod netns.
    pub listeners: bool,
}

impl Health {
    /// Rules complete and ztunnel listening: traffic is captured and served.
    pub fn enforced(&self) -> bool {
        self.rules.is_complete() && self.listeners
    }
}

/// Applies and removes capture, with one backend and one node namespace.
#[derive(Debug)]
pub struct Enforcer {
    backend: Backend,
    base: RedirectOptions,
    node: Netns,
    handoff: HandoffServer,
}

impl Enforcer {
    /// An enforcer programming `backend` rules, the host SNAT in `node`, handing pods to
    /// ztunnel through `handoff`.
    pub fn new(
        backend: Backend,
        base: RedirectOptions,
        node: Netns,
        handoff: HandoffServer,
    ) -> Self {
        Self {
            backend,
            base,
            node,
            handoff,
        }
    }

    /// The agent's rule options, before a pod's annotations narrow them ([`super::model::PodMeta::capture`]).
    pub fn options(&self) -> RedirectOptions {
        self.base
    }

    /// The node's own network namespace.
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The handoff server.
    pub fn handoff(&self) -> &HandoffServer {
        &self.handoff
    }

    /// Puts a pod in the mesh: ztunnel first (so the listeners exist before traffic is
    /// redirected to them), then the rules, then the node's SNAT entry. Existing connections
    /// are not touched: NAT only applies to new ones. With `require_ztunnel`, a ztunnel that is
    /// not connected is an error (CNI ADD); otherwise the pod is captured and ztunnel gets it
    /// on connect (live enrolment, replay).
    pub fn enrol(
        &self,
        pod: &PodInfo,
        netns: &Netns,
        ips: &[IpAddr],
        capture: &RedirectOptions,
        require_ztunnel: bool,
    ) -> Result<(), EnforceError> {
        let key = format!("{}/{}", pod.namespace, pod.name);
        let delivery = self
            .handoff
            .add_pod(pod.clone(), netns.try_clone()?.into_fd())
            .map_err(|source| EnforceError::Handoff {
                pod: key.clone(),
                source,
            })?;
        if delivery == Delivery::NotConnected && require_ztunnel {
            return Err(EnforceError::ZtunnelNotConnected { pod: key });
        }
        rules::apply(netns, self.backend, capture).map_err(|source| EnforceError::Rules {
            pod: key.clone(),
            source,
        })?;
        for ip in v4(ips) {
            rules::host::add_pod_ip(&self.node, self.backend, ip).map_err(|source| {
                EnforceError::Rules {
                    pod: key.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Takes a pod out of the mesh: rules first (new connections go direct at once), then the
    /// SNAT entry, then ztunnel's Del. `netns` is `None` when the namespace is already gone.
    /// Every step is attempted; the first error is returned.
    pub fn unenrol(
        &self,
        pod_key: &str,
        uid: &str,
        netns: Option<&Netns>,
        ips: &[IpAddr],
    ) -> Result<(), EnforceError> {
        let mut first: Option<EnforceError> = None;
        if let Some(ns) = netns
            && let Err(source) = rules::remove(ns, self.backend)
        {
            first.get_or_insert(EnforceError::Rules {
                pod: pod_key.to_string(),
                source,
            });
        }
        for ip in v4(ips) {
            if let Err(source) = rules::host::remove_pod_ip(&self.node, self.backend, ip) {
                first.get_or_insert(EnforceError::Rules {
                    pod: pod_key.to_string(),
                    source,
                });
            }
        }
        if let Err(source) = self.handoff.remove_pod(uid) {
            first.get_or_insert(EnforceError::Handoff {
                pod: pod_key.to_string(),
                source,
            });
        }
        first.map_or(Ok(()), Err)
    }

    /// Removes leftover rules from a pod that is not (or no longer) enrolled. Idempotent.
    pub fn clean(&self, pod_key: &str, netns: &Netns) -> Result<(), EnforceError> {
        rules::remove(netns, self.backend).map_err(|source| EnforceError::Rules {
            pod: pod_key.to_string(),
            source,
        })
    }

    /// Re-applies the rules of an enrolled pod (drift repair, or its annotations changed).
    pub fn reapply(
        &self,
        pod_key: &str,
        netns: &Netns,
        capture: &RedirectOptions,
    ) -> Result<(), EnforceError> {
        rules::apply(netns, self.backend, capture).map_err(|source| EnforceError::Rules {
            pod: pod_key.to_string(),
            source,
        })
    }

    /// Hands a pod to ztunnel again (Del + Add): repairs missing listeners.
    pub fn rehand(&self, pod: &PodInfo, netns: &Netns) -> Result<(), EnforceError> {
        let key = format!("{}/{}", pod.namespace, pod.name);
        let handoff = |source| EnforceError::Handoff {
            pod: key.clone(),
            source,
        };
        self.handoff.remove_pod(&pod.uid).map_err(handoff)?;
        self.handoff
            .add_pod(pod.clone(), netns.try_clone()?.into_fd())
            .map_err(handoff)?;
        Ok(())
    }

    /// Rules (against those of `capture`) and listeners of an enrolled pod.
    pub fn check(
        &self,
        pod_key: &str,
        netns: &Netns,
        capture: &RedirectOptions,
    ) -> Result<Health, EnforceError> {
        let rules =
            rules::check(netns, self.backend, capture).map_err(|source| EnforceError::Rules {
                pod: pod_key.to_string(),
                source,
            })?;
        let listeners = listeners::ztunnel_listening(netns)?;
        Ok(Health { rules, listeners })
    }

    /// Makes the node's SNAT set exactly `ips` (adds missing, removes others). Returns how many
    /// entries were changed.
    pub fn sync_host(&self, ips: &[IpAddr]) -> Result<usize, RulesError> {
        let want: std::collections::BTreeSet<Ipv4Addr> = v4(ips).collect();
        let have: std::collections::BTreeSet<Ipv4Addr> =
            rules::host::pod_ips(&self.node, self.backend)?
                .into_iter()
                .collect();
        let mut changed = 0;
        for ip in want.difference(&have) {
            rules::host::add_pod_ip(&self.node, self.backend, *ip)?;
            changed += 1;
        }
        for ip in have.difference(&want) {
            rules::host::remove_pod_ip(&self.node, self.backend, *ip)?;
            changed += 1;
        }
        Ok(changed)
    }
}

fn v4(ips: &[IpAddr]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    ips.iter().filter_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}
