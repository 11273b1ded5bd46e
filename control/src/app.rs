//! Runs the controller from its configuration.

use std::sync::Arc;

use anyhow::Context;
use mesh_identity::SpiffeId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::token_review::{AUDIENCE as TOKEN_AUDIENCE, TokenReviewer};
use crate::auth::{Authenticator, Caller, LocalTokens};
use crate::ca::{self, CaService};
use crate::config::{ServeConfig, TokenConfig};
use crate::serve;
use crate::source::Source;
use crate::source::files::FileSource;
use crate::source::kube::KubeSource;
use crate::store::Store;
use crate::translate::Options;
use crate::xds::ConfigService;

/// Runs `serve` until SIGTERM/SIGINT or `stop`; `ready` gets the bound address once serving.
pub async fn serve(
    config: ServeConfig,
    stop: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let store = Store::new(Options {
        root_namespace: config.root_namespace.clone(),
        trust_domain: config.trust_domain.clone(),
    });
    let (tx, rx) = mpsc::channel(16);
    let (auth, ca): (Arc<dyn Authenticator>, _) = match (&config.config_dir, &config.token_key) {
        (Some(dir), Some(key)) if !config.kubernetes => {
            let ca = ca::load_or_create(&config.ca_dir, &config.trust_domain)?;
            Box::new(FileSource::new(dir, config.poll)).spawn(tx, stop.clone());
            if let Some(status_dir) = &config.status_dir {
                tokio::spawn(crate::deployer::report::run(
                    store.clone(),
                    crate::deployer::report::Target::Dir(status_dir.clone()),
                    stop.clone(),
                ));
            }
            (Arc::new(LocalTokens::load_or_create(key)?), ca)
        }
        _ => {
            let client = kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
            let ca = ca::cluster::load_or_create(
                &client,
                &config.namespace,
                &config.ca_dir,
                &config.trust_domain,
            )
            .await?;
            ca::cluster::publish_root(&client, &config.namespace, &ca).await?;
            Box::new(KubeSource::new(client.clone())).spawn(tx, stop.clone());
            let opts = crate::deployer::DeployerOptions {
                image: config.waypoint_image.clone(),
                args: Vec::new(),
                control: Some(crate::deployer::ControlAccess {
                    address: config.advertised_address(),
                    root_pem: ca.bundle().to_pem(),
                }),
            };
            tokio::spawn(crate::deployer::apply::run(
                client.clone(),
                store.clone(),
                opts,
                stop.clone(),
            ));
            tokio::spawn(crate::deployer::report::run(
                store.clone(),
                crate::deployer::report::Target::Kube(client.clone()),
                stop.clone(),
            ));
            (
                Arc::new(TokenReviewer::new(client, vec![TOKEN_AUDIENCE.to_string()])),
                ca,
            )
        }
    };
    let ca = Arc::new(ca);
    tokio::spawn(store.clone().run(rx, stop.clone()));

    let id = SpiffeId::try_new(
        &config.trust_domain,
        &config.namespace,
        &config.service_account,
    )
    .context("control's own identity (--namespace, --service-account)")?;
    let tls = serve::server_tls(&ca, &id)?;
    let (listener, addr) = serve::bind(config.listen).await?;
    let xds = ConfigService::new(store.clone(), auth.clone(), config.ztunnel_sa.clone());
    let ca_svc = CaService::new(
        ca,
        auth,
        store,
        config.ztunnel_sa.clone(),
        config.cert_lifetime,
    );
    tracing::info!(%addr, identity = %id, "mesh-control serving");
    if let Some(r) = ready {
        let _ = r.send(addr);
    }
    let server_stop = stop.clone();
    tokio::spawn(async move {
        wait_for_signal(&server_stop).await;
        server_stop.cancel();
    });
    serve::serve(listener, tls, xds, ca_svc, stop).await?;
    tracing::info!("mesh-control stopped");
    Ok(())
}

/// Prints a token for `config`'s service account and node.
pub fn token(config: &TokenConfig) -> anyhow::Result<String> {
    let key = std::fs::read(&config.token_key)
        .with_context(|| format!("cannot read token key {}", config.token_key.display()))?;
    let caller = Caller {
        namespace: config.service_account.0.clone(),
        service_account: config.service_account.1.clone(),
        node: config.node.clone(),
    };
    Ok(LocalTokens::new(key).issue(&caller))
}

async fn wait_for_signal(stop: &CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        stop.cancelled().await;
        return;
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
