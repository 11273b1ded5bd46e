//! The agent's single-threaded core: it owns the cluster view, the known pod sandboxes and the
//! enforcer, and handles source events, CNI requests and self-check ticks one at a time, so no
//! two changes to one pod ever interleave.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mesh_api::handoff::PodInfo;

use super::cluster::Cluster;
use super::enforce::Enforcer;
use super::metrics::Metrics;
use super::records::RecordStore;
use super::source::PodSource;
use crate::netns::Netns;
use crate::protocol::{CniPod, CniPodRef, CniReply};
use crate::rules::RedirectOptions;

mod cni;
mod discovery;
mod selfcheck;

/// A pod sandbox the agent knows (from CNI ADD or its records) and its capture state.
#[derive(Debug)]
pub struct Tracked {
    /// What CNI ADD said.
    pub record: CniPod,
    /// The open network namespace.
    pub netns: Netns,
    /// Capture is installed (rules, SNAT, handed to ztunnel).
    pub enrolled: bool,
    /// The options its rules were last applied with (the pod's annotations can change them).
    pub capture: RedirectOptions,
}

impl Tracked {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.record.namespace, self.record.name)
    }
}

/// A CNI ADD waiting for its pod to show up in the source.
#[derive(Debug)]
pub struct PendingAdd {
    /// The request.
    pub pod: CniPod,
    /// Where the answer goes.
    pub reply: Sender<CniReply>,
    /// When to give up.
    pub deadline: Instant,
}

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a CNI ADD may wait for its pod to appear in the source.
    pub pod_wait: Duration,
    /// Period of the self-check.
    pub check_interval: Duration,
    /// The host's `/proc`, searched for the namespaces of pods that started before the agent.
    pub proc_root: std::path::PathBuf,
}

/// The core; see the module documentation.
pub struct Reconciler {
    pub(super) cluster: Cluster,
    pub(super) tracked: BTreeMap<String, Tracked>,
    pub(super) pending: Vec<PendingAdd>,
    pub(super) enforcer: Enforcer,
    pub(super) store: RecordStore,
    pub(super) source: std::sync::Arc<dyn PodSource>,
    pub(super) metrics: Metrics,
    pub(super) settings: Settings,
    pub(super) next_check: Instant,
    /// Last netns search per pod uid (pods that never went through our CNI ADD).
    pub(super) searched: std::collections::HashMap<String, Instant>,
}

impl Reconciler {
    /// Assembles the core from what the startup phase prepared.
    pub fn new(
        cluster: Cluster,
        tracked: BTreeMap<String, Tracked>,
        enforcer: Enforcer,
        store: RecordStore,
        source: std::sync::Arc<dyn PodSource>,
        metrics: Metrics,
        settings: Settings,
    ) -> Self {
        let me = Self {
            cluster,
            tracked,
            pending: Vec::new(),
            enforcer,
            store,
            source,
            metrics,
            next_check: Instant::now() + settings.check_interval,
            settings,
            searched: std::collections::HashMap::new(),
        };
        me.update_gauges();
        me
    }

    /// When the loop must wake up next (self-check or a pending ADD's deadline).
    pub fn next_wakeup(&self) -> Instant {
        self.pending
            .iter()
            .map(|p| p.deadline)
            .fold(self.next_check, Instant::min)
    }

    /// Runs what is due now: expired pending ADDs and the self-check.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = waiting;
        for p in expired {
            let message = format!(
                "pod {}/{} (uid {:?}) is not known to the node agent's {} source yet; \
                 is the pod scheduled to this node and the source in sync?",
                p.pod.namespace,
                p.pod.name,
                p.pod.uid,
                self.source.name()
            );
            self.metrics.cni_request("add", "error");
            // The plugin may have given up already.
            let _ = p.reply.send(CniReply::Error {
                message,
                retry: true,
            });
        }
        if now >= self.next_check {
            self.self_check();
            self.next_check = Instant::now() + self.settings.check_interval;
        }
    }

    /// Applies a source event and reconciles the pods it affects.
    pub fn on_source(&mut self, event: super::model::SourceEvent) {
        let changed = self.cluster.apply(event);
        for uid in &changed.pods {
            if self.cluster.pod(uid).is_none() {
                self.searched.remove(uid);
            }
        }
        self.resolve_pending();
        let mut uids: Vec<String> = changed.pods.into_iter().collect();
        if !changed.namespaces.is_empty() || changed.synced {
            uids.extend(
                self.tracked
                    .iter()
                    .filter(|(_, t)| {
                        changed.synced || changed.namespaces.contains(&t.record.namespace)
                    })
                    .map(|(uid, _)| uid.clone()),
            );
        }
        uids.sort();
        uids.dedup();
        for uid in uids {
            self.reconcile(&uid);
        }
        self.update_gauges();
    }

    /// Brings pod `uid` to the state its labels ask for (live enrolment / release).
    pub fn reconcile(&mut self, uid: &str) {
        let Some(t) = self.tracked.get(uid) else {
            self.discover(uid);
            return;
        };
        let desired = match self.cluster.decision(uid) {
            Some(d) => d.enrolled(),
            // Unknown pod: after the initial sync it was deleted; before, keep its state.
            None if self.cluster.is_synced() => {
                self.forget(uid);
                return;
            }
            None => return,
        };
        if desired == t.enrolled {
            if desired && t.capture != self.capture_of(uid) {
                self.recapture(uid);
            }
            return;
        }
        if desired {
            if let Err(err) = self.enrol(uid, false) {
                tracing::warn!(%err, uid, "live enrolment failed; the self-check retries");
            }
        } else {
            self.release(uid);
        }
    }

    /// The rule options of pod `uid`: the agent's, narrowed by the pod's annotations.
    pub(super) fn capture_of(&self, uid: &str) -> RedirectOptions {
        let base = self.enforcer.options();
        self.cluster.pod(uid).map_or(base, |p| p.capture(base))
    }

    /// Re-applies an enrolled pod's rules after its annotations changed what is captured.
    fn recapture(&mut self, uid: &str) {
        let want = self.capture_of(uid);
        let Some(t) = self.tracked.get_mut(uid) else {
            return;
        };
        match self.enforcer.reapply(&t.key(), &t.netns, &want) {
            Ok(()) => {
                tracing::info!(pod = %t.key(), bypass_inbound = want.bypass_inbound, dns_capture = want.dns_capture, "capture changed with the pod's annotations");
                t.capture = want;
            }
            Err(err) => {
                tracing::warn!(%err, "re-applying the pod's rules failed; the self-check retries")
            }
        }
    }

    /// Enrols a tracked pod; `require_ztunnel` for CNI ADD. Rolls back on failure.
    pub(super) fn enrol(
        &mut self,
        uid: &str,
        require_ztunnel: bool,
    ) -> Result<(), super::enforce::EnforceError> {
        let Some(t) = self.tracked.get(uid) else {
            return Ok(());
        };
        let sa = self
            .cluster
            .pod(uid)
            .map(|p| p.service_account().to_string())
            .unwrap_or_else(|| "default".into());
        let info = PodInfo {
            uid: uid.to_string(),
            name: t.record.name.clone(),
            namespace: t.record.namespace.clone(),
            service_account: sa,
        };
        let started = Instant::now();
        let capture = self.capture_of(uid);
        match self
            .enforcer
            .enrol(&info, &t.netns, &t.record.ips, &capture, require_ztunnel)
        {
            Ok(()) => {
                tracing::info!(pod = %t.key(), uid, took = ?started.elapsed(), "pod enrolled");
                self.set_enrolled(uid, true);
                if let Some(t) = self.tracked.get_mut(uid) {
                    t.capture = capture;
                }
                Ok(())
            }
            Err(err) => {
                let key = t.key();
                if let Err(undo) = self
                    .enforcer
                    .unenrol(&key, uid, Some(&t.netns), &t.record.ips)
                {
                    tracing::warn!(%undo, pod = %key, "rolling back a failed enrolment");
                }
                self.set_enrolled(uid, false);
                Err(err)
            }
        }
    }

    /// Takes a tracked pod out of the mesh (it stays tracked).
    pub(super) fn release(&mut self, uid: &str) {
        let Some(t) = self.tracked.get(uid) else {
            return;
        };
        let netns = t.record.netns.exists().then_some(&t.netns);
        match self.enforcer.unenrol(&t.key(), uid, netns, &t.record.ips) {
            Ok(()) => tracing::info!(pod = %t.key(), uid, "pod released from the mesh"),
            Err(err) => tracing::warn!(%err, uid, "releasing the pod was incomplete"),
        }
        self.set_enrolled(uid, false);
    }

    /// Releases and forgets a pod (deleted, or its sandbox is gone).
    pub(super) fn forget(&mut self, uid: &str) {
        if self.tracked.get(uid).is_some_and(|t| t.enrolled) {
            self.release(uid);
        }
        if let Some(t) = self.tracked.remove(uid) {
            tracing::info!(pod = %t.key(), uid, "pod sandbox forgotten");
        }
        if let Err(err) = self.store.remove(uid) {
            tracing::warn!(%err, "cannot remove the pod record");
        }
    }

    fn set_enrolled(&mut self, uid: &str, enrolled: bool) {
        let Some(t) = self.tracked.get_mut(uid) else {
            return;
        };
        let changed = t.enrolled != enrolled;
        t.enrolled = enrolled;
        if changed && let Some(pod) = self.cluster.pod(uid) {
            self.source.set_redirection(pod, enrolled);
        }
    }

    pub(super) fn update_gauges(&self) {
        let enrolled = self.tracked.values().filter(|t| t.enrolled).count();
        self.metrics.set_enrolled(enrolled);
        self.metrics
            .set_ztunnel_connected(self.enforcer.handoff().is_connected());
    }

    /// The uid a CNI request refers to.
    pub(super) fn resolve_uid(&self, pod: &CniPodRef) -> Option<String> {
        if !pod.uid.is_empty() {
            return Some(pod.uid.clone());
        }
        self.cluster
            .uid_of(&pod.namespace, &pod.name)
            .map(str::to_string)
            .or_else(|| {
                self.tracked
                    .iter()
                    .find(|(_, t)| t.record.container_id == pod.container_id)
                    .map(|(uid, _)| uid.clone())
            })
    }
}
