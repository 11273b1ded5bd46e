//! The runtime hook of services networking: each pod's `resolv.conf` (written before its
//! containers start, removed with its sandbox), and every tick the endpoints of every service,
//! turned into the nodes' DNAT tables ([`crate::local::kubeproxy`]) and the cluster DNS records
//! ([`crate::local::dns`]), each rewritten only when it changed.

use super::{PodView, ServiceView, endpoints};
use crate::local::dns::server::{remove_etc_netns, write_records, write_resolv_conf};
use crate::local::dns::{Records, ServiceRecord};
use crate::local::kubeproxy::{KubeProxy, vip_rules};
use crate::local::network::node_netns;
use crate::local::runtime::{Ctx, PodRun, RuntimeHook, log};
use crate::local::store::Objects;

/// Services networking (registered in `runtime::hooks`).
#[derive(Debug, Default)]
pub struct Networking {
    kube_proxy: KubeProxy,
    records: Option<Records>,
}

impl RuntimeHook for Networking {
    fn name(&self) -> &'static str {
        "services"
    }

    fn sandbox_ready(&mut self, _ctx: &Ctx, pod: &PodRun) -> Result<(), String> {
        write_resolv_conf(&pod.netns, &pod.key.namespace).map_err(|e| e.to_string())
    }

    fn sandbox_removed(&mut self, _ctx: &Ctx, pod: &PodRun) {
        if let Err(e) = remove_etc_netns(&pod.netns) {
            log(e);
        }
    }

    fn reconcile(&mut self, ctx: &Ctx, objects: &Objects, pods: &[PodRun]) -> Result<(), String> {
        let pod_views: Vec<PodView> = objects
            .of_kind("Pod", None)
            .filter_map(PodView::from_object)
            .collect();
        let mut services = Vec::new();
        for obj in objects.of_kind("Service", None) {
            match ServiceView::from_object(obj) {
                Ok(Some(svc)) => {
                    let eps = endpoints(&svc, &pod_views);
                    services.push((svc, eps));
                }
                Ok(None) => {}
                // Admission refuses such objects; one stored by hand is skipped.
                Err(e) => log(format!("service skipped: {e}")),
            }
        }
        let nodes: Vec<(u8, String)> = (1..=ctx.nodes)
            .map(|n| (n, node_netns(&ctx.id, n)))
            .collect();
        let dnat = self.kube_proxy.sync(&nodes, &vip_rules(&services));
        let mut records = Records::default();
        for (svc, eps) in &services {
            let ips = match svc.cluster_ip {
                Some(vip) => vec![vip],
                None => {
                    let mut ips: Vec<_> = eps
                        .iter()
                        .flat_map(|p| p.endpoints.iter().map(|e| *e.ip()))
                        .collect();
                    ips.sort();
                    ips.dedup();
                    ips
                }
            };
            records.services.push(ServiceRecord {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                ips,
            });
        }
        for p in &pod_views {
            if let Some(ip) = p.ip {
                records.pods.insert(ip, p.namespace.clone());
            }
        }
        for p in pods {
            records.pods.insert(p.ip, p.key.namespace.clone());
        }
        if self.records.as_ref() != Some(&records) {
            write_records(&ctx.dir, &records).map_err(|e| e.to_string())?;
            self.records = Some(records);
        }
        dnat.map_err(|e| format!("service DNAT: {e}"))
    }
}
