//! Starts every part of the waypoint from a [`Config`] and runs until drained.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context;
use mesh_identity::CertificateAuthority;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use ztunnel::admin::{self, AdminState, Ready};
use ztunnel::identity::{CertManager, LocalCa};
use ztunnel::telemetry;

use crate::config::{Config, LogFormat};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{self, Server};
use crate::state::{self, RouteFiles, State};
use crate::upstream::Upstreams;

/// Runs the waypoint until a signal or `/quitquitquit` drains it.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let format = match config.log_format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    let log = telemetry::init_logging(format, &telemetry::directives_from_env())
        .context("cannot initialise logging")?;

    let ca_cert = std::fs::read(&config.ca_cert)
        .with_context(|| format!("cannot read --ca-cert {}", config.ca_cert.display()))?;
    let ca_key = std::fs::read(&config.ca_key)
        .with_context(|| format!("cannot read --ca-key {}", config.ca_key.display()))?;
    let ca = CertificateAuthority::from_pem(&ca_cert, &ca_key, &config.trust_domain)
        .context("cannot load the CA from --ca-cert/--ca-key")?;
    let certs = Arc::new(CertManager::new(Arc::new(LocalCa::new(
        ca,
        config.cert_lifetime,
    ))));
    let identity = config.identity();
    certs
        .server_config(&identity)
        .context("cannot issue the waypoint's own certificate")?;

    let snapshot = state::load_config(&config.config)?;
    let state = Arc::new(State::new(snapshot));
    let gateway = config.gateway();
    let drain = CancellationToken::new();
    if let Some(dir) = &config.routes {
        let files = RouteFiles::of(dir);
        state::reload_routes(dir, (&gateway.0, &gateway.1), &state);
        tokio::spawn(state::watch_routes(
            dir.clone(),
            gateway.clone(),
            state.clone(),
            files,
            drain.clone(),
        ));
    }
    tokio::spawn(state::watch_config(
        config.config.clone(),
        state.clone(),
        drain.clone(),
    ));

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let my_ip = config.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let proxy = Arc::new(Proxy {
        state: state.clone(),
        upstreams: Arc::new(Upstreams::new(certs.clone(), identity.clone(), my_ip)),
        metrics,
        gateway: gateway.clone(),
        balancer: Default::default(),
        authn: Default::default(),
    });
    let serve = hbone::ServeOptions {
        drain_period: config.drain,
        ..Default::default()
    };
    let server = Arc::new(Server {
        proxy,
        certs: certs.clone(),
        identity: identity.clone(),
        sniff_timeout: std::time::Duration::from_millis(config.sniff_timeout_ms),
        serve,
        drain: drain.clone(),
    });

    // Admin endpoints stop only after the drain, so /quitquitquit and metrics keep answering.
    let servers_stop = CancellationToken::new();
    let dump = {
        let (state, certs) = (state.clone(), certs.clone());
        Arc::new(move || {
            let mut v = state.dump();
            v["certificates"] = certs.dump();
            v
        })
    };
    let admin_l = admin::bind("admin", config.admin_addr).await?;
    let metrics_l = admin::bind("metrics", config.metrics_addr).await?;
    let ready_l = admin::bind("readiness", config.readiness_addr).await?;
    let hbone_l = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot bind the HBONE listener to {}", config.listen))?;
    let ready = Ready::new();
    tokio::spawn(admin::serve_admin(
        admin_l,
        AdminState::new(dump, log, drain.clone()),
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
    tokio::spawn(server::run(hbone_l, server));
    ready.set_ready(true);
    tracing::info!(identity = %identity, listen = %config.listen, "waypoint started");

    wait_for_stop(&drain).await;
    ready.set_ready(false);
    drain.cancel();
    tracing::info!(period = ?config.drain, "draining");
    tokio::time::sleep(config.drain).await;
    servers_stop.cancel();
    tracing::info!("waypoint stopped");
    Ok(())
}

async fn wait_for_stop(drain: &CancellationToken) {
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
