//! The pod runtime of a local cluster: `meshctl local runtime --state DIR` (hidden), started by
//! `up` as a component (recorded in `state.json`, log `<state>/logs/runtime.log`), runs in the
//! root mount namespace (so the pod namespaces it adds under `/run/netns` are visible to
//! everyone) and node-1's network namespace (which it enters itself, so `down`'s sweep finds it)
//! until `down` stops it.
//!
//! # Design (for the hooks of services, DNS, kube-proxy and probes)
//!
//! - The **store** ([`super::store`]) is the truth: `apply/delete/label` change it under a lock;
//!   every change is projected to control's config dir and the agents' `cluster.yaml`.
//! - Each **tick** ([`TICK`]) the runtime: (1) runs the controllers ([`super::controllers`]):
//!   waypoint Gateways -> Deployments ([`super::waypoints`]), Deployments -> pods, scheduling (`spec.nodeName`); (2) creates a sandbox
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesh_cni::agent::LocalStatus;
use serde_json::{Value, json};

use super::network::node_name;
use super::objects::Key;
use super::sandbox::{self, Sandbox};
use super::state::ClusterState;
use super::store::{self, ANNOTATION_REDIRECTION, Objects};
use super::{LocalError, controllers};

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
        let state = ClusterState::load(dir)?
            .ok_or_else(|| super::inspect::InspectError::NotUp(dir.display().to_string()))?;
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
    fn reconcile(
        &mut self,
        _ctx: &Ctx,
        _objects: &Objects,
        _pods: &[PodRun],
    ) -> Result<(), String> {
        Ok(())
    }
}

/// The hooks of the runtime. Helper B's modules register here, e.g.
/// `Box::new(super::probe::Probes::default())` (readiness), `super::dns::...`,
/// `super::kubeproxy::...`.
pub fn hooks() -> Vec<Box<dyn RuntimeHook>> {
    vec![
        Box::new(super::probe::hook::Probes::default()),
        Box::new(super::services::hook::Networking::default()),
    ]
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

/// How long after a failed sandbox the runtime tries again.
const RETRY: Duration = Duration::from_secs(2);

/// The runtime's memory: the sandboxes it runs and the pods whose sandbox failed lately.
struct Runtime {
    ctx: Ctx,
    hooks: Vec<Box<dyn RuntimeHook>>,
    pods: BTreeMap<Key, Sandbox>,
    failed: BTreeMap<Key, (Instant, String)>,
}

/// Runs the runtime of the cluster in `dir` until killed (`down` SIGTERMs it).
pub fn run(dir: &Path) -> Result<(), LocalError> {
    let ctx = Ctx::load(dir)?;
    // Into node-1's network namespace (the mount namespace stays the root one, so the pod
    // namespaces added under /run/netns are visible to all): `down`'s sweep of the node
    // namespaces then stops the runtime even when the state file is lost.
    let node1 = super::network::node_netns(&ctx.id, 1);
    let path = format!("/run/netns/{node1}");
    let ns = std::fs::File::open(&path).map_err(super::io(format!("open {path}")))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| super::io(format!("enter {path}"))(e.into()))?;
    let mut rt = Runtime {
        ctx,
        hooks: hooks(),
        pods: BTreeMap::new(),
        failed: BTreeMap::new(),
    };
    log(format_args!(
        "runtime of cluster {} started ({} nodes)",
        rt.ctx.id, rt.ctx.nodes
    ));
    loop {
        // Without its state file the cluster is gone (or being torn down): nothing to run for.
        if !ClusterState::file(&rt.ctx.dir).exists() {
            log("state file gone; the runtime stops");
            return Ok(());
        }
        if let Err(e) = rt.tick() {
            log(format_args!("tick failed: {e}"));
        }
        std::thread::sleep(TICK);
    }
}

fn text<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

impl Runtime {
    fn tick(&mut self) -> Result<(), LocalError> {
        let now = super::apply::timestamp();
        let nodes = self.ctx.nodes;
        let ctx = &self.ctx;
        let objects = store::update(&self.ctx.dir, |o| {
            super::waypoints::reconcile(ctx, o);
            controllers::deployments(o, &now);
            controllers::schedule(o, nodes);
            Ok(o.clone())
        })?;
        // Tokens of new waypoints, outside the lock: their Deployments follow next tick.
        if let Err(e) = super::waypoints::tokens(&self.ctx, &objects) {
            log(format_args!("waypoints: {e}"));
        }
        self.teardown(&objects);
        self.start(&objects);
        for sb in self.pods.values_mut() {
            sb.supervise();
        }
        self.write_status()?;
        let runs: Vec<PodRun> = self.pods.values().map(|s| s.run.clone()).collect();
        let objects = store::load(&self.ctx.dir)?;
        for h in &mut self.hooks {
            if let Err(e) = h.reconcile(&self.ctx, &objects, &runs) {
                log(format_args!("{}: {e}", h.name()));
            }
        }
        Ok(())
    }

    /// Removes the sandboxes of pods deleted, marked deleted or replaced (another uid).
    fn teardown(&mut self, objects: &Objects) {
        let gone: Vec<Key> = self
            .pods
            .iter()
            .filter(|(k, sb)| {
                objects
                    .get(k)
                    .is_none_or(|p| deleting(p) || text(p, "/metadata/uid") != sb.run.uid)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            let Some(mut sb) = self.pods.remove(&k) else {
                continue;
            };
            match sandbox::destroy(&self.ctx, &mut sb) {
                Ok(()) => log(format_args!("pod {k} removed")),
                Err(e) => log(format_args!("pod {k} not fully removed: {e}")),
            }
            for h in &mut self.hooks {
                h.sandbox_removed(&self.ctx, &sb.run);
            }
        }
    }

    /// Makes sandboxes for scheduled pods that have none.
    fn start(&mut self, objects: &Objects) {
        let now = Instant::now();
        self.failed.retain(|_, (at, _)| *at + RETRY > now);
        for p in objects.of_kind("Pod", None) {
            let key = Key::of(p);
            let finished = matches!(text(p, "/status/phase"), "Succeeded" | "Failed");
            let node = controllers::node_number(text(p, "/spec/nodeName"))
                .filter(|n| (1..=self.ctx.nodes).contains(n));
            let Some(node) = node else { continue };
            if deleting(p)
                || finished
                || self.pods.contains_key(&key)
                || self.failed.contains_key(&key)
            {
                continue;
            }
            let hooks = &mut self.hooks;
            let ctx = &self.ctx;
            let mut ready = |run: &PodRun| -> Result<(), String> {
                for h in hooks.iter_mut() {
                    h.sandbox_ready(ctx, run)
                        .map_err(|e| format!("{}: {e}", h.name()))?;
                }
                Ok(())
            };
            match sandbox::create(ctx, p, node, &mut ready) {
                Ok(sb) => {
                    log(format_args!(
                        "pod {key} sandbox {} ip {} on node-{node}",
                        sb.run.netns, sb.run.ip
                    ));
                    self.pods.insert(key, sb);
                }
                Err(e) => {
                    log(format_args!(
                        "pod {key} sandbox failed (retry in {}s): {e}",
                        RETRY.as_secs()
                    ));
                    self.failed.insert(key, (now, e.to_string()));
                }
            }
        }
    }

    /// Writes status and enrolment annotations of every pod, and removes finished deletions.
    fn write_status(&mut self) -> Result<(), LocalError> {
        let mut statuses = BTreeMap::new();
        for (k, sb) in &self.pods {
            let ready = pod_ready(&self.ctx, &mut self.hooks, &sb.run);
            statuses.insert(k.clone(), sb.status(ready));
        }
        let redirected = self.redirected();
        let (pods, failed) = (&self.pods, &self.failed);
        store::update(&self.ctx.dir, |o| {
            let keys: Vec<Key> = o.of_kind("Pod", None).map(Key::of).collect();
            for k in keys {
                let Some(p) = o.get_mut(&k) else { continue };
                if deleting(p) && !pods.contains_key(&k) {
                    o.remove(&k);
                    continue;
                }
                if let Some(st) = statuses.get(&k) {
                    if p.get("status") != Some(st) {
                        p["status"] = st.clone();
                    }
                } else if let Some((_, e)) = failed.get(&k) {
                    let st = json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False",
                        "reason": "SandboxFailed", "message": e}]});
                    if p.get("status") != Some(&st) {
                        p["status"] = st;
                    }
                }
                let enrolled = redirected.contains(text(p, "/metadata/uid"));
                let annotations = &mut p["metadata"]["annotations"];
                let has = annotations.get(ANNOTATION_REDIRECTION).is_some();
                if enrolled && !has {
                    annotations[ANNOTATION_REDIRECTION] = Value::from("enabled");
                } else if !enrolled
                    && has
                    && let Some(m) = annotations.as_object_mut()
                {
                    m.remove(ANNOTATION_REDIRECTION);
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Uids the node agents marked `ambient.istio.io/redirection=enabled`.
    fn redirected(&self) -> BTreeSet<String> {
        (1..=self.ctx.nodes)
            .filter_map(|n| {
                let f = self.ctx.dir.join(node_name(n)).join("redirection.json");
                std::fs::read(f)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LocalStatus>(&b).ok())
            })
            .flat_map(|s| s.redirection.into_keys())
            .collect()
    }
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
