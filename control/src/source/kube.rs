//! The Kubernetes source: one kube-rs watcher per kind (list, then watch; re-list after a desync). Objects are
//! read as dynamic JSON and parsed by [`crate::objects`], so the source and the file source share one parser.
//! A re-list replaces that kind's objects (objects missing from it are deleted). The source reports itself
//! synced once every kind has been listed; kinds whose CRD is not installed are retried with backoff and do not
//! hold the sync back after [`CRD_GRACE`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Source, Update};
use crate::index::Change;
use crate::objects::{Kind, Object};

/// How long a kind whose API does not answer (CRD not installed) may delay the first sync.
pub const CRD_GRACE: Duration = Duration::from_secs(10);

/// (kind, group, version, API kind, plural) of every watched kind.
pub const WATCHED: [(Kind, &str, &str, &str, &str); 16] = [
    (Kind::Namespace, "", "v1", "Namespace", "namespaces"),
    (Kind::Pod, "", "v1", "Pod", "pods"),
    (Kind::Service, "", "v1", "Service", "services"),
    (
        Kind::ServiceAccount,
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
    ),
    (
        Kind::EndpointSlice,
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
    ),
    (
        Kind::Gateway,
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
    ),
    (
        Kind::GatewayClass,
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
        "gatewayclasses",
    ),
    (
        Kind::HttpRoute,
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    ),
    (
        Kind::GrpcRoute,
        "gateway.networking.k8s.io",
        "v1",
        "GRPCRoute",
        "grpcroutes",
    ),
    (
        Kind::AuthorizationPolicy,
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
    ),
    (
        Kind::RequestAuthentication,
        "security.istio.io",
        "v1",
        "RequestAuthentication",
        "requestauthentications",
    ),
    (
        Kind::PeerAuthentication,
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
    ),
    (
        Kind::VirtualService,
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
    ),
    (
        Kind::DestinationRule,
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
    ),
    (
        Kind::HttpFault,
        "waypoint.mesh.io",
        "v1alpha1",
        "HTTPFault",
        "httpfaults",
    ),
    (
        Kind::ReferenceGrant,
        "gateway.networking.k8s.io",
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
    ),
];

/// The Kubernetes source.
pub struct KubeSource {
    client: kube::Client,
}

impl KubeSource {
    /// A source reading through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl Source for KubeSource {
    fn spawn(
        self: Box<Self>,
        tx: mpsc::Sender<Update>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let pending: Arc<Mutex<BTreeSet<Kind>>> =
            Arc::new(Mutex::new(WATCHED.iter().map(|w| w.0).collect()));
        for (kind, group, version, api_kind, plural) in WATCHED {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, api_kind),
                plural,
            );
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            tokio::spawn(watch_kind(
                kind,
                ar,
                api,
                tx.clone(),
                pending.clone(),
                stop.clone(),
            ));
        }
        // After the grace period, kinds that never listed (no CRD) stop holding the sync back.
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(CRD_GRACE) => {
                    let left = std::mem::take(&mut *lock(&pending));
                    if !left.is_empty() {
                        tracing::warn!(kinds = ?left, "these kinds could not be listed (CRD missing?); serving without them");
                        let _ = tx.send(Update::Synced).await;
                    }
                }
            }
        })
    }
}

fn lock(m: &Mutex<BTreeSet<Kind>>) -> std::sync::MutexGuard<'_, BTreeSet<Kind>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The object of a watch event, or `None` (logged) when it does not parse.
fn parse(ar: &ApiResource, o: DynamicObject) -> Option<Object> {
    let mut value = serde_json::to_value(o).ok()?;
    value["apiVersion"] = ar.api_version.clone().into();
    value["kind"] = ar.kind.clone().into();
    match Object::from_value(0, value) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(kind = %ar.kind, error = %e, "object skipped");
            None
        }
    }
}

async fn watch_kind(
    kind: Kind,
    ar: ApiResource,
    api: Api<DynamicObject>,
    tx: mpsc::Sender<Update>,
    pending: Arc<Mutex<BTreeSet<Kind>>>,
    stop: CancellationToken,
) {
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<Object> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = stream.next() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let update = match event {
            Ok(Event::Init) => {
                listing.clear();
                None
            }
            Ok(Event::InitApply(o)) => {
                listing.extend(parse(&ar, o));
                None
            }
            Ok(Event::InitDone) => {
                let objects = std::mem::take(&mut listing);
                tracing::info!(kind = %kind, objects = objects.len(), "listed");
                Some(Update::ResyncKind(kind, objects))
            }
            Ok(Event::Apply(o)) => parse(&ar, o).map(|o| Update::Changes(vec![Change::Upsert(o)])),
            Ok(Event::Delete(o)) => {
                parse(&ar, o).map(|o| Update::Changes(vec![Change::Delete(o.key())]))
            }
            Err(e) => {
                tracing::warn!(kind = %kind, error = %e, "watch failed; retrying with backoff");
                None
            }
        };
        let Some(update) = update else { continue };
        let synced_now = matches!(update, Update::ResyncKind(..)) && {
            let mut p = lock(&pending);
            p.remove(&kind) && p.is_empty()
        };
        if tx.send(update).await.is_err() {
            return;
        }
        if synced_now && tx.send(Update::Synced).await.is_err() {
            return;
        }
    }
}
