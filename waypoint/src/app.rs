//! Starts every part of the waypoint from a [`Config`] and runs until drained.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context;
use mesh_identity::CertificateAuthority;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use ztunnel::admin::{self, AdminState, Ready};
use ztunnel::identity::{CertManager, CertSource, ControlCa, LocalCa};
use ztunnel::telemetry;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{self, Server};
use crate::state::{self, RouteFiles, State};
use crate::upstream::Upstreams;
use ztunnel::workers::{self, Workers};

/// Runs the waypoint until a signal or `/quitquitquit` drains it.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let log = telemetry::init_logging(config.log_format, &telemetry::directives_from_env())
        .context("cannot initialise logging")?;

    let identity = config.identity();
    let gateway = config.gateway();
    let drain = CancellationToken::new();
    let (state, certs) = sources(&config, &gateway, drain.clone()).await?;
    // Awaited, not fetched on the runtime's thread: the CA may be control, a round trip away.
    certs
        .ready(&identity)
        .await
        .context("cannot obtain the waypoint's own certificate")?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let my_ip = config.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let n_workers = match config.workers {
        0 => workers::default_count(),
        n => n,
    };
    let congestion = config.tunnel_congestion.checked();
    let upstreams = Upstreams::new(
        certs.clone(),
        identity.clone(),
        my_ip,
        n_workers,
        congestion.clone(),
    );
    let proxy = Arc::new(Proxy {
        state: state.clone(),
        upstreams: Arc::new(upstreams),
        metrics,
        gateway: gateway.clone(),
        balancer: Default::default(),
        authn: crate::authn::Authenticator::new(config.jwks_ca.clone())
            .map_err(anyhow::Error::msg)?,
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
    // Data-path workers (ztunnel's worker model): each a thread with its own single-threaded
    // runtime, HBONE listener (SO_REUSEPORT) and upstream pools, so a request lives on one thread
    // from the downstream HBONE frame to the upstream one and back. With the work-stealing runtime
    // the tasks of one request woke each other across threads: ~6 context switches per request at
    // 1,000 requests/s instead of ~3.4, and ~15 % more CPU (benches/README.md).
    let workers = Workers::start(n_workers, "waypoint-worker")
        .context("cannot start the data-path workers")?;
    let hbone_ls = server::bind(config.listen, workers.handles(), congestion.as_ref())
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
    for (listener, worker) in hbone_ls.into_iter().zip(workers.handles()) {
        worker.spawn(server::run(listener, server.clone()));
    }
    ready.set_ready(true);
    tracing::info!(identity = %identity, listen = %config.listen, workers = n_workers, "waypoint started");

    ztunnel::app::wait_for_stop(&drain).await;
    ready.set_ready(false);
    drain.cancel();
    tracing::info!(period = ?config.drain, "draining");
    tokio::time::sleep(config.drain).await;
    servers_stop.cancel();
    tokio::task::spawn_blocking(move || workers.shutdown())
        .await
        .context("stopping the data-path workers failed")?;
    tracing::info!("waypoint stopped");
    Ok(())
}

/// The config sources (files, or control's stream) with their first config loaded, and the
/// certificate manager (local CA in testing mode, else control's CA).
async fn sources(
    config: &Config,
    gateway: &(String, String),
    stop: CancellationToken,
) -> anyhow::Result<(Arc<State>, Arc<CertManager>)> {
    let local = match (&config.ca_cert, &config.ca_key) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert)
                .with_context(|| format!("cannot read --ca-cert {}", cert.display()))?;
            let key = std::fs::read(key)
                .with_context(|| format!("cannot read --ca-key {}", key.display()))?;
            let ca = CertificateAuthority::from_pem(&cert, &key, &config.trust_domain)
                .context("cannot load the CA from --ca-cert/--ca-key")?;
            tracing::warn!(
                "TESTING MODE: signing the waypoint's certificate locally with --ca-cert/--ca-key"
            );
            Some(Arc::new(LocalCa::new(ca, config.cert_lifetime)) as Arc<dyn CertSource>)
        }
        _ => None,
    };
    let Some(control) = &config.control else {
        let path = config
            .config
            .clone()
            .context("--config or --control is required")?;
        let state = Arc::new(State::new(state::load_config(&path)?));
        if let Some(dir) = &config.routes {
            let files = RouteFiles::of(dir);
            state::reload_routes(dir, (&gateway.0, &gateway.1), &state);
            tokio::spawn(state::watch_routes(
                dir.clone(),
                gateway.clone(),
                state.clone(),
                files,
                stop.clone(),
            ));
        }
        tokio::spawn(state::watch_config(path, state.clone(), stop));
        let ca = local.context("--ca-cert/--ca-key are required without --control")?;
        return Ok((state, Arc::new(CertManager::new(ca))));
    };
    let token = config
        .token_file
        .clone()
        .context("--control needs --token-file")?;
    let target = mesh_xds::channel::ControlTarget::from_flags(
        control,
        config.control_ca.as_deref(),
        &config.control_identity,
    )
    .await?;
    let (addr, roots) = (target.addr, target.roots.clone());
    let channel = mesh_xds::channel::channel(&target)?;
    // Control knows a waypoint by its Gateway: it subscribes as `<namespace>/<gateway name>`.
    let node = format!("{}/{}", gateway.0, gateway.1);
    let state = Arc::new(State::new(mesh_api::ConfigSnapshot::default()));
    let (first_tx, mut first_rx) = tokio::sync::watch::channel(false);
    let client = mesh_xds::client::ConfigClient::new(
        channel.clone(),
        token.clone(),
        node.clone(),
        mesh_xds::KIND_WAYPOINT,
    );
    let sink = Arc::new(state::control::ControlSink::new(
        state.clone(),
        gateway.clone(),
        first_tx,
    ));
    tokio::spawn(client.run(sink, stop.clone()));
    tracing::info!(%addr, gateway = %node, "waiting for the first config from control");
    tokio::select! {
        _ = stop.cancelled() => anyhow::bail!("stopped before control sent a config"),
        r = first_rx.wait_for(|got| *got) => { r.context("config stream task ended")?; }
    }
    let source: Arc<dyn CertSource> = match local {
        Some(ca) => ca,
        None => Arc::new(ControlCa::new(
            mesh_xds::ca::CaClient::new(channel, token, node),
            roots,
            tokio::runtime::Handle::current(),
        )),
    };
    Ok((state, Arc::new(CertManager::new(source))))
}
