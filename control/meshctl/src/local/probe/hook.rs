//! The runtime hook running readiness probes: each due probe runs on a short-lived thread inside
//! the pod's node netns, results come back over a channel, so a tick never waits on a probe.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use super::{ProbeState, check, readiness_probes};
use crate::local::network::node_netns;
use crate::local::runtime::{Ctx, PodRun, RuntimeHook, log};

/// A probe result: pod uid, probe index, the outcome.
type Outcome = (String, usize, Result<(), String>);

#[derive(Debug)]
struct PodProbes {
    name: String,
    states: Vec<ProbeState>,
    in_flight: Vec<bool>,
}

/// Readiness probes of every running pod (registered in `runtime::hooks`).
#[derive(Debug)]
pub struct Probes {
    pods: HashMap<String, PodProbes>,
    tx: Sender<Outcome>,
    rx: Receiver<Outcome>,
}

impl Default for Probes {
    fn default() -> Self {
        let (tx, rx) = channel();
        Self {
            pods: HashMap::new(),
            tx,
            rx,
        }
    }
}

impl Probes {
    fn collect(&mut self) {
        while let Ok((uid, i, outcome)) = self.rx.try_recv() {
            let Some(p) = self.pods.get_mut(&uid) else {
                continue;
            };
            let (Some(state), Some(flight)) = (p.states.get_mut(i), p.in_flight.get_mut(i)) else {
                continue;
            };
            *flight = false;
            let container = state.spec.container.clone();
            if let Err(why) = &outcome {
                log(format!(
                    "pod {} container {container}: readiness probe failed: {why}",
                    p.name
                ));
            }
            if state.record(outcome.is_ok()) {
                let now = if state.ready() { "ready" } else { "not ready" };
                log(format!("pod {} container {container}: {now}", p.name));
            }
        }
    }
}

impl RuntimeHook for Probes {
    fn name(&self) -> &'static str {
        "probes"
    }

    fn sandbox_removed(&mut self, _ctx: &Ctx, pod: &PodRun) {
        self.pods.remove(&pod.uid);
    }

    fn ready(&mut self, ctx: &Ctx, pod: &PodRun) -> Option<bool> {
        self.collect();
        let now = Instant::now();
        if !self.pods.contains_key(&pod.uid) {
            let states = match readiness_probes(&pod.pod) {
                Ok(specs) => specs.into_iter().map(|s| ProbeState::new(s, now)).collect(),
                Err(e) => {
                    log(format!("pod {}: {e}; it stays not ready", pod.key));
                    return Some(false);
                }
            };
            let in_flight = vec![false; Vec::len(&states)];
            self.pods.insert(
                pod.uid.clone(),
                PodProbes {
                    name: format!("{}/{}", pod.key.namespace, pod.key.name),
                    states,
                    in_flight,
                },
            );
        }
        let p = self.pods.get_mut(&pod.uid)?;
        if p.states.is_empty() {
            return None;
        }
        let netns = node_netns(&ctx.id, pod.node);
        for (i, state) in p.states.iter_mut().enumerate() {
            if p.in_flight[i] || !state.due(now) {
                continue;
            }
            state.started(now);
            p.in_flight[i] = true;
            let (tx, uid, ip, netns) = (self.tx.clone(), pod.uid.clone(), pod.ip, netns.clone());
            let (action, timeout) = (state.spec.action.clone(), state.spec.timeout);
            let spawned = std::thread::Builder::new()
                .name("probe".into())
                .spawn(move || {
                    let outcome = mesh_cni::netns::Netns::open_named(&netns)
                        .map_err(|e| e.to_string())
                        .and_then(|ns| {
                            ns.run(|| check(&action, ip, timeout))
                                .map_err(|e| e.to_string())
                        })
                        .and_then(|r| r);
                    let _ = tx.send((uid, i, outcome));
                });
            if spawned.is_err() {
                p.in_flight[i] = false;
            }
        }
        Some(p.states.iter().all(ProbeState::ready))
    }
}
