//! CNI requests in the reconciler: ADD enrols (or not) and answers when done, DEL releases,
//! CHECK compares the pod with what it should be, STATUS says the agent is serving.

use std::sync::mpsc::Sender;
use std::time::Instant;

use super::{PendingAdd, Reconciler, Tracked};
use crate::agent::discover::agent_view;
use crate::netns::Netns;
use crate::protocol::{CniPod, CniPodRef, CniReply, CniRequest};

impl Reconciler {
    /// Handles one CNI request; the reply is sent on `reply` now or, for an ADD whose pod the
    /// source has not reported yet, when it does (or at the deadline).
    pub fn on_cni(&mut self, request: CniRequest, reply: Sender<CniReply>) {
        let (op, answer) = match request {
            CniRequest::Add(pod) => {
                let pod_ref = CniPodRef {
                    uid: pod.uid.clone(),
                    name: pod.name.clone(),
                    namespace: pod.namespace.clone(),
                    container_id: pod.container_id.clone(),
                };
                match self.cluster.uid_of(&pod.namespace, &pod.name) {
                    Some(uid) if pod.uid.is_empty() || pod.uid == uid => {
                        let mut pod = pod;
                        pod.uid = uid.to_string();
                        ("add", self.add(pod))
                    }
                    _ => {
                        tracing::debug!(pod = %format!("{}/{}", pod_ref.namespace, pod_ref.name), "ADD waits for the pod to appear in the source");
                        self.pending.push(PendingAdd {
                            pod,
                            reply,
                            deadline: Instant::now() + self.settings.pod_wait,
                        });
                        return;
                    }
                }
            }
            CniRequest::Del(pod) => ("del", self.del(&pod)),
            CniRequest::Check(pod) => ("check", self.check(&pod)),
            CniRequest::Status => ("status", CniReply::Ok),
        };
        self.metrics.cni_request(op, result_label(&answer));
        self.update_gauges();
        // The plugin may have timed out and gone.
        let _ = reply.send(answer);
    }

    /// Answers pending ADDs whose pods are now known.
    pub(super) fn resolve_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            match self.cluster.uid_of(&p.pod.namespace, &p.pod.name) {
                Some(uid) if p.pod.uid.is_empty() || p.pod.uid == uid => {
                    let mut pod = p.pod;
                    pod.uid = uid.to_string();
                    let answer = self.add(pod);
                    self.metrics.cni_request("add", result_label(&answer));
                    let _ = p.reply.send(answer);
                }
                _ => self.pending.push(p),
            }
        }
    }

    fn add(&mut self, mut pod: CniPod) -> CniReply {
        pod.netns = agent_view(&pod.netns, &self.settings.proc_root);
        let uid = pod.uid.clone();
        let key = format!("{}/{}", pod.namespace, pod.name);
        let netns = match Netns::open_path(pod.netns.clone(), key.clone()) {
            Ok(ns) => ns,
            Err(err) => {
                return CniReply::Error {
                    message: err.to_string(),
                    retry: false,
                };
            }
        };
        // A new sandbox of a known pod replaces the old one.
        if let Some(old) = self.tracked.get(&uid)
            && old.record.container_id != pod.container_id
        {
            self.forget(&uid);
        }
        if let Err(err) = self.store.save(&pod) {
            return CniReply::Error {
                message: err.to_string(),
                retry: false,
            };
        }
        let (already, capture) = match self.tracked.get(&uid) {
            Some(t) => (t.enrolled, t.capture),
            None => (false, self.capture_of(&uid)),
        };
        self.tracked.insert(
            uid.clone(),
            Tracked {
                record: pod,
                netns,
                enrolled: already,
                capture,
            },
        );
        let decision = self.cluster.decision(&uid);
        if !decision.is_some_and(|d| d.enrolled()) {
            tracing::info!(pod = %key, ?decision, "pod not enrolled");
            if already {
                self.release(&uid);
            }
            return CniReply::NotEnrolled;
        }
        match self.enrol(&uid, true) {
            Ok(()) => CniReply::Enrolled,
            Err(err) => CniReply::Error {
                message: err.to_string(),
                retry: matches!(
                    err,
                    super::super::enforce::EnforceError::ZtunnelNotConnected { .. }
                ),
            },
        }
    }

    fn del(&mut self, pod: &CniPodRef) -> CniReply {
        self.pending
            .retain(|p| p.pod.container_id != pod.container_id);
        if let Some(uid) = self.resolve_uid(pod)
            && self.tracked.get(&uid).is_some_and(|t| {
                // Discovered pods have no container id: any sandbox of theirs matches.
                t.record.container_id.is_empty() || t.record.container_id == pod.container_id
            })
        {
            self.forget(&uid);
        }
        CniReply::Ok
    }

    fn check(&mut self, pod: &CniPodRef) -> CniReply {
        let Some(uid) = self.resolve_uid(pod) else {
            return CniReply::Error {
                message: format!(
                    "pod {}/{} is not known to the node agent",
                    pod.namespace, pod.name
                ),
                retry: false,
            };
        };
        let Some(t) = self.tracked.get(&uid) else {
            return CniReply::Error {
                message: format!(
                    "no sandbox of pod {}/{} went through ADD on this node",
                    pod.namespace, pod.name
                ),
                retry: false,
            };
        };
        let desired = self.cluster.decision(&uid).is_some_and(|d| d.enrolled());
        if desired != t.enrolled {
            return CniReply::Error {
                message: format!(
                    "pod {} should be {} but is {}",
                    t.key(),
                    if desired {
                        "enrolled"
                    } else {
                        "outside the mesh"
                    },
                    if t.enrolled {
                        "enrolled"
                    } else {
                        "not enrolled"
                    }
                ),
                retry: false,
            };
        }
        if !t.enrolled {
            return CniReply::NotEnrolled;
        }
        match self.enforcer.check(&t.key(), &t.netns, &t.capture) {
            Ok(h) if h.enforced() => CniReply::Enrolled,
            Ok(h) => CniReply::Error {
                message: format!(
                    "pod {} is enrolled but not enforced: missing rules {:?}, unexpected {:?}, ip rule {}, local route {}, ztunnel listening {}",
                    t.key(),
                    h.rules.missing,
                    h.rules.unexpected,
                    h.rules.ip_rule,
                    h.rules.local_route,
                    h.listeners
                ),
                retry: false,
            },
            Err(err) => CniReply::Error {
                message: err.to_string(),
                retry: false,
            },
        }
    }
}

fn result_label(reply: &CniReply) -> &'static str {
    match reply {
        CniReply::Enrolled => "enrolled",
        CniReply::NotEnrolled => "not_enrolled",
        CniReply::Ok => "ok",
        CniReply::Error { .. } => "error",
    }
}
