//! Starts every part of ztunnel from a [`Config`] and runs until drained.

use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Ready};
use crate::config::Config;
use crate::identity::CertManager;
use crate::inpod::{client, pods::PodManager};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::telemetry;
use crate::workers::Workers;

/// Runs ztunnel until a signal or `/quitquitquit` drains it.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let log = telemetry::init_logging(config.log_format, &telemetry::directives_from_env())
        .context("cannot initialise logging")?;

    let drain = CancellationToken::new();
    let (state, cert_source) = crate::control::start(&config, drain.clone()).await?;
    let certs = Arc::new(CertManager::new(cert_source));

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let serve = hbone::ServeOptions {
        drain_period: config.drain,
        ..Default::default()
    };
    let workers = match config.workers {
        0 => crate::workers::default_count(),
        n => n,
    };
    let workers = Arc::new(
        Workers::start(workers, "ztunnel-worker").context("cannot start the data-path workers")?,
    );
    let proxy = Arc::new(Proxy {
        state: state.clone(),
        certs: certs.clone(),
        metrics,
        drain: drain.clone(),
        trust_domain: config.trust_domain.clone(),
        pool: hbone::PoolConfig::default(),
        serve,
        workers: workers.clone(),
        tunnel_congestion: config.tunnel_congestion.checked(),
    });
    let pods = Arc::new(PodManager::new(proxy));

    // Admin endpoints stop only after the drain, so /quitquitquit and metrics keep answering meanwhile.
    let servers_stop = CancellationToken::new();
    let dump = {
        let (state, pods, certs) = (state.clone(), pods.clone(), certs.clone());
        Arc::new(move || {
            let snap = state.snapshot();
            serde_json::json!({
                "version": state.version(),
                "config": &*snap,
                "pods": pods.dump(),
                "certificates": certs.dump(),
            })
        })
    };
    let admin_l = admin::bind("admin", config.admin_addr).await?;
    let metrics_l = admin::bind("metrics", config.metrics_addr).await?;
    let ready_l = admin::bind("readiness", config.readiness_addr).await?;
    let ready = Ready::new();
    let admin_state = AdminState::new(dump, log, drain.clone());
    tokio::spawn(admin::serve_admin(
        admin_l,
        admin_state,
        servers_stop.clone(),
    ));
    tokio::spawn(admin::serve_metrics(
        metrics_l,
        registry,
        servers_stop.clone(),
    ));
    tokio::spawn(admin::serve_readiness(
        ready_l,
        ready.clone(),
        servers_stop.clone(),
    ));

    let on_snapshot = {
        let ready = ready.clone();
        Arc::new(move || ready.set_ready(true))
    };
    tokio::spawn(crate::inpod::reaper::run(pods.clone(), drain.clone()));
    let handoff = client::spawn(
        config.handoff_socket.clone(),
        pods.clone(),
        tokio::runtime::Handle::current(),
        drain.clone(),
        on_snapshot,
    )
    .context("cannot start the handoff client thread")?;
    tracing::info!(node = %config.node, "ztunnel started");

    wait_for_stop(&drain).await;
    ready.set_ready(false);
    drain.cancel();
    tracing::info!(period = ?config.drain, "draining");
    tokio::time::sleep(config.drain).await;
    servers_stop.cancel();
    // The handoff thread notices the cancellation within its read poll interval.
    let _ = tokio::task::spawn_blocking(move || handoff.join()).await;
    let _ = tokio::task::spawn_blocking(move || workers.shutdown()).await;
    tracing::info!("ztunnel stopped");
    Ok(())
}

/// Returns when the process should drain: `drain` cancelled (e.g. `/quitquitquit`), SIGTERM or
/// SIGINT. Shared with the waypoint, which stops the same way.
pub async fn wait_for_stop(drain: &CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            drain.cancelled().await;
            return;
        }
    };
    tokio::select! {
        _ = drain.cancelled() => tracing::info!("drain requested"),
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
