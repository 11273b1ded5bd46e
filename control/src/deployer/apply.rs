//! Drives the deployer against the API server: after every index change (and every [`RESYNC`]), server-side
//! applies the objects of each waypoint Gateway whose rendering changed, with the mesh root ConfigMap of its
//! namespace (field manager `mesh-control`, forced: control owns these objects), then writes the Gateway's status
//! when it changed. Deleted Gateways need nothing: the owner reference lets Kubernetes collect their objects (the
//! root ConfigMap stays, shared). Failures are logged and retried at the next pass. The status of routes and the
//! other L7 objects is [`super::report`]'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use tokio_util::sync::CancellationToken;

use super::render::{DeployerOptions, waypoint_objects};
use super::status::{Observed, gateway_status};
use crate::ca::cluster::ROOT_CONFIGMAP;
use crate::objects::{Gateway, Kind, Object};
use crate::store::Store;
use crate::translate::waypoint::is_waypoint;
use crate::translate::workload::pod_ready;
use crate::translate::{LABEL_GATEWAY_NAME, label, ns_name};

/// Field manager of control's server-side applies.
pub const FIELD_MANAGER: &str = "mesh-control";
/// Every waypoint is re-checked this often even without changes (repairs objects edited by hand).
pub const RESYNC: Duration = Duration::from_secs(60);

type Key = (String, String);

/// Runs the deployer until `stop`.
pub async fn run(
    client: kube::Client,
    store: Arc<Store>,
    opts: DeployerOptions,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = store.wait_synced() => {}
    }
    // Every update, not only resource changes: a Gateway's generation or a pod's readiness can change its status
    // without changing what proxies get.
    let mut seq = store.subscribe_updates();
    let mut applied: HashMap<Key, String> = HashMap::new();
    let mut addresses: HashMap<Key, String> = HashMap::new();
    let mut statuses: HashMap<Key, Observed> = HashMap::new();
    loop {
        seq.borrow_and_update();
        let work = waypoints(&store);
        for (gw, ready_pods) in work {
            let (ns, name) = ns_name(&gw.metadata);
            let key = (ns.to_string(), name.to_string());
            let objects = waypoint_objects(&gw, &opts);
            let fingerprint = format!("{objects:?}");
            if applied.get(&key) != Some(&fingerprint) {
                match apply_objects(&client, ns, name, &objects).await {
                    Ok(ip) => {
                        tracing::info!(gateway = %format!("{ns}/{name}"), "waypoint objects applied");
                        applied.insert(key.clone(), fingerprint);
                        if let Some(ip) = ip {
                            addresses.insert(key.clone(), ip);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(gateway = %format!("{ns}/{name}"), error = %e, "cannot apply waypoint objects; retrying");
                        continue;
                    }
                }
            }
            let observed = Observed {
                address: addresses.get(&key).cloned(),
                ready_pods,
            };
            if statuses.get(&key) != Some(&observed) {
                match write_status(&client, &gw, &observed).await {
                    Ok(()) => {
                        statuses.insert(key, observed);
                    }
                    Err(e) => {
                        tracing::warn!(gateway = %format!("{ns}/{name}"), error = %e, "cannot write Gateway status")
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = seq.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RESYNC) => applied.clear(),
        }
    }
}

/// The waypoint Gateways and how many of their pods are ready.
fn waypoints(store: &Store) -> Vec<(Gateway, usize)> {
    let index = store.lock();
    index
        .objects_of(Kind::Gateway)
        .filter_map(|o| match o {
            Object::Gateway(g) if is_waypoint(g) => Some((**g).clone()),
            _ => None,
        })
        .map(|gw| {
            let (ns, name) = ns_name(&gw.metadata);
            let ready = index
                .objects_in(Kind::Pod, ns)
                .filter(|o| match o {
                    Object::Pod(p) => {
                        label(&p.metadata, LABEL_GATEWAY_NAME) == Some(name) && pod_ready(p)
                    }
                    _ => false,
                })
                .count();
            (gw, ready)
        })
        .collect()
}

/// Applies the objects (the namespace's root ConfigMap first, which the pods mount); returns the Service's
/// cluster IP.
async fn apply_objects(
    client: &kube::Client,
    ns: &str,
    name: &str,
    objects: &super::WaypointObjects,
) -> Result<Option<String>, kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(root) = &objects.root_cert {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .patch(
                ROOT_CONFIGMAP,
                &params,
                &Patch::Apply(with_type(root, "v1", "ConfigMap")),
            )
            .await?;
    }
    let mut sa = objects.service_account.clone();
    sa.metadata.managed_fields = None;
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch(
            name,
            &params,
            &Patch::Apply(with_type(&sa, "v1", "ServiceAccount")),
        )
        .await?;
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &params,
            &Patch::Apply(with_type(&objects.deployment, "apps/v1", "Deployment")),
        )
        .await?;
    let svc: Service = Api::<Service>::namespaced(client.clone(), ns)
        .patch(
            name,
            &params,
            &Patch::Apply(with_type(&objects.service, "v1", "Service")),
        )
        .await?;
    Ok(svc
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None"))
}

/// The JSON of `obj` with `apiVersion`/`kind` (k8s-openapi omits them when serializing through serde_json of the
/// inner struct only for some callers; server-side apply requires them).
fn with_type<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    v["apiVersion"] = api_version.into();
    v["kind"] = kind.into();
    v
}

async fn write_status(
    client: &kube::Client,
    gw: &Gateway,
    observed: &Observed,
) -> Result<(), kube::Error> {
    let (ns, name) = ns_name(&gw.metadata);
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"),
        "gateways",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let body = gateway_status(gw, observed, &now);
    apply_status(&api, name, &body).await
}

/// Server-side applies `body` as the status of object `name` of `api`, as control's field manager (the
/// Gateways here, the routes and the Istio kinds in [`super::report`]).
pub(crate) async fn apply_status(
    api: &Api<DynamicObject>,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), kube::Error> {
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}
