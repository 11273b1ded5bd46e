//! Pods that must be enrolled but never went through our CNI ADD (they were running before the
//! agent was installed): their namespace is found by IP ([`crate::agent::discover`]) and they
//! are tracked and enrolled like the others.

use std::time::{Duration, Instant};

use super::{Reconciler, Tracked};
use crate::agent::discover;
use crate::protocol::CniPod;

/// Least time between two namespace searches for one pod: a search walks `/proc`, and a pod
/// that is not found (not started yet, IP not reported yet) would otherwise be searched on every
/// event.
pub const SEARCH_BACKOFF: Duration = Duration::from_secs(5);

impl Reconciler {
    /// Finds and enrols pod `uid` if it must be enrolled, has IPs and is not tracked yet.
    pub(super) fn discover(&mut self, uid: &str) {
        if self.tracked.contains_key(uid)
            || !self.cluster.decision(uid).is_some_and(|d| d.enrolled())
        {
            return;
        }
        let Some(pod) = self.cluster.pod(uid) else {
            return;
        };
        if pod.ips.is_empty() {
            return;
        }
        let now = Instant::now();
        if self
            .searched
            .get(uid)
            .is_some_and(|last| now.duration_since(*last) < SEARCH_BACKOFF)
        {
            return;
        }
        self.searched.insert(uid.to_string(), now);
        let Some(found) =
            discover::find_netns(&pod.ips, self.enforcer.node(), &self.settings.proc_root)
        else {
            tracing::debug!(pod = %pod.key(), ips = ?pod.ips, "no network namespace holds the pod's IPs (yet)");
            return;
        };
        tracing::info!(pod = %pod.key(), netns = %found.path.display(), "found the namespace of a pod started before the agent");
        let record = CniPod {
            uid: uid.to_string(),
            name: pod.name.clone(),
            namespace: pod.namespace.clone(),
            container_id: String::new(),
            netns: found.path,
            ifname: String::new(),
            ips: pod.ips.clone(),
        };
        if let Err(err) = self.store.save(&record) {
            tracing::warn!(%err, "cannot record the discovered pod");
        }
        self.searched.remove(uid);
        self.tracked.insert(
            uid.to_string(),
            Tracked {
                record,
                netns: found.netns,
                enrolled: false,
                capture: self.capture_of(uid),
            },
        );
        if let Err(err) = self.enrol(uid, false) {
            tracing::warn!(%err, uid, "enrolling a discovered pod failed; the self-check retries");
        }
    }
}
