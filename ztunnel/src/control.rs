//! Where config and certificates come from: the local file and a CA file (testing mode), or control's config
//! stream and CA (`--control`). With control, ztunnel waits for the first config before serving pods (so no
//! connection is ever checked against an empty policy set) and then keeps its last good config while control is
//! unreachable.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::identity::{CertSource, ControlCa, LocalCa};
use crate::state::{self, State};

/// Starts the configured sources; returns the state (with its first config loaded) and the certificate source.
pub async fn start(
    config: &Config,
    stop: CancellationToken,
) -> anyhow::Result<(Arc<State>, Arc<dyn CertSource>)> {
    let local_ca = local_ca(config)?;
    let Some(control) = config.control.clone() else {
        let path = config
            .config
            .clone()
            .context("--config or --control is required")?;
        let state = Arc::new(State::new(state::load_file(&path)?));
        tokio::spawn(state::watch_file(path, state.clone(), stop));
        let ca = local_ca.context("--ca-cert/--ca-key are required without --control")?;
        return Ok((state, ca));
    };
    let token_file = config
        .token_file
        .clone()
        .context("--control needs --token-file")?;
    let target = mesh_xds::channel::ControlTarget::from_flags(
        &control,
        config.control_ca.as_deref(),
        &config.control_identity,
    )
    .await?;
    let (addr, roots) = (target.addr, target.roots.clone());
    let channel = mesh_xds::channel::channel(&target)?;

    let state = Arc::new(State::new(mesh_api::ConfigSnapshot::default()));
    let (first_tx, mut first_rx) = tokio::sync::watch::channel(false);
    let client = mesh_xds::client::ConfigClient::new(
        channel.clone(),
        token_file.clone(),
        config.node.clone(),
        mesh_xds::KIND_ZTUNNEL,
    );
    tokio::spawn(client.run(
        Arc::new(state::ControlSink::new(state.clone(), first_tx)),
        stop.clone(),
    ));
    tracing::info!(%addr, "waiting for the first config from control");
    tokio::select! {
        _ = stop.cancelled() => anyhow::bail!("stopped before control sent a config"),
        r = first_rx.wait_for(|got| *got) => { r.context("config stream task ended")?; }
    }
    let certs: Arc<dyn CertSource> = match local_ca {
        Some(ca) => ca,
        None => {
            let client = mesh_xds::ca::CaClient::new(channel, token_file, config.node.clone());
            Arc::new(ControlCa::new(
                client,
                roots,
                tokio::runtime::Handle::current(),
            ))
        }
    };
    Ok((state, certs))
}

fn local_ca(config: &Config) -> anyhow::Result<Option<Arc<dyn CertSource>>> {
    let (Some(cert), Some(key)) = (&config.ca_cert, &config.ca_key) else {
        return Ok(None);
    };
    let ca_cert =
        std::fs::read(cert).with_context(|| format!("cannot read --ca-cert {}", cert.display()))?;
    let ca_key =
        std::fs::read(key).with_context(|| format!("cannot read --ca-key {}", key.display()))?;
    let ca = mesh_identity::CertificateAuthority::from_pem(&ca_cert, &ca_key, &config.trust_domain)
        .context("invalid --ca-cert/--ca-key")?;
    tracing::warn!("TESTING MODE: signing workload certificates locally with --ca-cert/--ca-key");
    Ok(Some(Arc::new(LocalCa::new(ca, config.cert_lifetime))))
}
