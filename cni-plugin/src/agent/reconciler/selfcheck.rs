//! The self-check (beyond Istio): every enrolled pod's netns must still hold our rules and
//! ztunnel's listeners. Drift is repaired (rules re-applied, the pod handed to ztunnel again),
//! vanished sandboxes are forgotten, live enrolments that failed are retried, and the pods
//! that stay enrolled-but-not-enforced are exported as a gauge.

use super::Reconciler;

impl Reconciler {
    /// One round of checks and repairs.
    pub fn self_check(&mut self) {
        let uids: Vec<String> = self.tracked.keys().cloned().collect();
        let connected = self.enforcer.handoff().is_connected();
        let mut not_enforced = 0usize;
        for uid in uids {
            let Some(t) = self.tracked.get(&uid) else {
                continue;
            };
            if !t.record.netns.exists() {
                tracing::info!(pod = %t.key(), "pod network namespace vanished without a CNI DEL");
                self.forget(&uid);
                continue;
            }
            // Enrolments that failed earlier (e.g. a tool error) get another try.
            let desired = self.cluster.decision(&uid).map(|d| d.enrolled());
            if desired == Some(true) && !t.enrolled {
                if let Err(err) = self.enrol(&uid, false) {
                    tracing::warn!(%err, "enrolment retry failed");
                    not_enforced += 1;
                }
                continue;
            }
            if !t.enrolled {
                continue;
            }
            if !self.check_and_repair(&uid, connected) {
                not_enforced += 1;
            }
        }
        let untracked: Vec<String> = self
            .cluster
            .pods()
            .filter(|p| !self.tracked.contains_key(&p.uid))
            .map(|p| p.uid.clone())
            .collect();
        for uid in untracked {
            self.discover(&uid);
        }
        let ips: Vec<std::net::IpAddr> = self
            .tracked
            .values()
            .filter(|t| t.enrolled)
            .flat_map(|t| t.record.ips.iter().copied())
            .collect();
        match self.enforcer.sync_host(&ips) {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(changed = n, "host probe SNAT set drifted; repaired");
                self.metrics.repaired("host");
            }
            Err(err) => tracing::warn!(%err, "cannot check the host probe SNAT set"),
        }
        self.metrics.set_not_enforced(not_enforced);
        self.update_gauges();
    }

    /// Checks one enrolled pod, repairs drift, and says whether it is enforced afterwards.
    fn check_and_repair(&mut self, uid: &str, connected: bool) -> bool {
        let Some(t) = self.tracked.get(uid) else {
            return true;
        };
        let key = t.key();
        let want = self.capture_of(uid);
        let health = match self.enforcer.check(&key, &t.netns, &want) {
            Ok(h) => h,
            Err(err) => {
                tracing::warn!(%err, pod = %key, "self-check failed");
                return false;
            }
        };
        if health.enforced() {
            return true;
        }
        if !health.rules.is_complete() {
            tracing::warn!(pod = %key, missing = ?health.rules.missing, unexpected = ?health.rules.unexpected,
                ip_rule = health.rules.ip_rule, local_route = health.rules.local_route, "redirect rules drifted; re-applying");
            match self.enforcer.reapply(&key, &t.netns, &want) {
                Ok(()) => self.metrics.repaired("rules"),
                Err(err) => tracing::warn!(%err, "repairing the rules failed"),
            }
        }
        if !health.listeners && connected {
            tracing::warn!(pod = %key, "ztunnel listeners missing in the pod; handing the pod over again");
            let info = mesh_api::handoff::PodInfo {
                uid: uid.to_string(),
                name: t.record.name.clone(),
                namespace: t.record.namespace.clone(),
                service_account: self
                    .cluster
                    .pod(uid)
                    .map(|p| p.service_account().to_string())
                    .unwrap_or_else(|| "default".into()),
            };
            match self.enforcer.rehand(&info, &t.netns) {
                Ok(()) => self.metrics.repaired("listeners"),
                Err(err) => tracing::warn!(%err, "handing the pod to ztunnel again failed"),
            }
        }
        let enforced = self
            .enforcer
            .check(&key, &t.netns, &want)
            .is_ok_and(|h| h.enforced());
        if enforced && let Some(t) = self.tracked.get_mut(uid) {
            t.capture = want;
        }
        enforced
    }
}
