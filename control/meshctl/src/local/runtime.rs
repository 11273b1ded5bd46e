//! The pod runtime of a local cluster: `meshctl local runtime --state DIR` (hidden), started by
//! `up` as a component (recorded in `state.json`, log `<state>/logs/runtime.log`), runs in the
//! root network and mount namespace (so the pod namespaces it adds under `/run/netns` are
//! visible to everyone) until `down` stops it.
//!
//! # Design (for the hooks of services, DNS, kube-proxy and probes)
//!
//! - The **store** ([`super::store`]) is the truth: `apply/delete/label` change it under a lock;
//!   every change is projected to control's config dir and the agents' `cluster.yaml`.
//! - Each **tick** ([`TICK`]) the runtime: (1) runs the controllers ([`super::controllers`]):
//!   Deployments -> pods, scheduling (`spec.nodeName`); (2) creates a sandbox
//!   ([`super::sandbox`]) for every scheduled pod it does not run yet: pod netns recorded in
//!   `state.json` first (name `meshctl-<id>-pod-<ns>-<name>`), CNI ADD of the node's chain
//!   (bridge + host-local + mesh-cni, run in the node netns), [`RuntimeHook::sandbox_ready`],
//!   then the containers' processes via `ip netns exec <netns>` (so `/etc/netns/<netns>/` files,
//!   e.g. `resolv.conf`, are bind-mounted over `/etc`); (3) tears down pods marked deleted
//!   (SIGTERM/SIGKILL, CNI DEL, netns removed, [`RuntimeHook::sandbox_removed`]) and removes
//!   them from the store; (4) supervises processes (restartPolicy); (5) decides readiness
//!   ([`pod_ready`]: running and every hook's [`RuntimeHook::ready`] agrees); (6) writes pod
//!   status (phase, podIP, hostIP, Ready condition, restarts) and the CNI's enrolment
//!   annotation (from `<state>/node-N/redirection.json`) back to the store; (7) calls
//!   [`RuntimeHook::reconcile`] with the current objects and sandboxes (Service VIPs, DNAT, DNS).
//! - **Hooks** are registered in [`hooks`]: one line per module. Admission of objects at apply
//!   time (ClusterIP allocation) is `super::apply::admit`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::LocalError;
use super::objects::Key;
use super::state::ClusterState;
use super::store::Objects;

/// How often the runtime reconciles.
pub const TICK: Duration = Duration::from_millis(100);

/// What every hook may know about the cluster.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Absolute state directory.
    pub dir: PathBuf,
    /// Cluster id (`meshctl-<id>-...` namespace names).
    pub id: String,
    /// Number of nodes.
    pub nodes: u8,
    /// `PATH` in force when `up` ran.
    pub path_env: String,
}

impl Ctx {
    /// The context of the cluster in `dir`.
    pub fn load(dir: &Path) -> Result<Self, LocalError> {
        let state = ClusterState::load(dir)?.ok_or_else(|| {
            super::inspect::InspectError::NotUp(dir.display().to_string())
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            id: state.id,
            nodes: state.nodes,
            path_env: state.path_env,
        })
    }

    /// The network namespace of pod `namespace/name`.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        pod_netns(&self.id, namespace, name)
    }
}

/// The network namespace of pod `namespace/name` of cluster `id`: the cluster prefix (so
/// `down`'s sweep covers it), then `pod-<namespace>-<name>`.
pub fn pod_netns(id: &str, namespace: &str, name: &str) -> String {
    format!("{}pod-{namespace}-{name}", super::network::netns_prefix(id))
}

/// A pod the runtime runs, as hooks see it.
#[derive(Debug, Clone)]
pub struct PodRun {
    /// Its key (kind `Pod`).
    pub key: Key,
    /// `metadata.uid`.
    pub uid: String,
    /// Node number.
    pub node: u8,
    /// Its network namespace (under `/run/netns`).
    pub netns: String,
    /// Its address (from the CNI result).
    pub ip: Ipv4Addr,
    /// The pod object as stored when the sandbox was made.
    pub pod: Value,
    /// Whether at least one container process is running.
    pub running: bool,
}

/// A module plugged into the runtime (services, DNS, kube-proxy-like DNAT, readiness probes).
/// Every method has a no-op default; errors are logged by the runtime, never fatal.
pub trait RuntimeHook: Send {
    /// Name in log lines.
    fn name(&self) -> &'static str;

    /// After CNI ADD, before the containers start (e.g. write `/etc/netns/<netns>/resolv.conf`).
    /// An error fails the sandbox (it is torn down and retried).
    fn sandbox_ready(&mut self, _ctx: &Ctx, _pod: &PodRun) -> Result<(), String> {
        Ok(())
    }

    /// After the sandbox of `pod` was removed (netns deleted).
    fn sandbox_removed(&mut self, _ctx: &Ctx, _pod: &PodRun) {}

    /// Readiness of a running pod (e.g. its readinessProbe); `None` = no opinion.
    fn ready(&mut self, _ctx: &Ctx, _pod: &PodRun) -> Option<bool> {
        None
    }

    /// Every tick, with the stored objects and the running pods (Service VIPs, DNAT, DNS).
    fn reconcile(&mut self, _ctx: &Ctx, _objects: &Objects, _pods: &[PodRun]) -> Result<(), String> {
        Ok(())
    }
}

/// The hooks of the runtime. Helper B's modules register here, e.g.
/// `Box::new(super::probe::Probes::default())` (readiness), `super::dns::...`,
/// `super::kubeproxy::...`.
pub fn hooks() -> Vec<Box<dyn RuntimeHook>> {
    Vec::new()
}

/// Readiness of a pod: it runs, and no hook (readiness probe) says it is not ready. This is
/// the single point where readiness is decided.
pub fn pod_ready(ctx: &Ctx, hooks: &mut [Box<dyn RuntimeHook>], pod: &PodRun) -> bool {
    if !pod.running {
        return false;
    }
    let mut ready = true;
    for h in hooks.iter_mut() {
        if h.ready(ctx, pod) == Some(false) {
            ready = false;
        }
    }
    ready
}

/// A log line of the runtime (its stdout is `<state>/logs/runtime.log`).
pub fn log(msg: impl std::fmt::Display) {
    println!("{} {msg}", super::apply::timestamp());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_netns_names_carry_the_cluster_prefix() {
        let n = pod_netns("ab12cd34", "shop", "web-x1");
        assert_eq!(n, "meshctl-ab12cd34-pod-shop-web-x1");
        assert!(n.starts_with(&super::super::network::netns_prefix("ab12cd34")));
    }
}
