//! `mesh-cni-agent`: the node agent. Parses flags into `mesh_cni::agent::AgentConfig` and runs
//! `mesh_cni::agent::Agent` until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use mesh_cni::agent::install::{InstallConfig, PLUGIN_TYPE};
use mesh_cni::agent::{Agent, AgentConfig, SourceConfig};
use mesh_cni::rules::{Backend, RedirectOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceKind {
    /// Watch pods and namespaces in the Kubernetes API.
    Kubernetes,
    /// Read the cluster-state file given by --local-state.
    Local,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Nft,
    Iptables,
}

/// The mesh node agent: enrols pods by label, installs capture, hands pods to ztunnel.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// This node's name (Kubernetes: spec.nodeName of its pods).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Where pod events come from.
    #[arg(long, value_enum, default_value = "kubernetes")]
    source: SourceKind,
    /// The cluster-state file (YAML/JSON) for --source local.
    #[arg(long, required_if_eq("source", "local"))]
    local_state: Option<PathBuf>,
    /// State directory (pod records, local status file).
    #[arg(long, default_value = "/var/run/mesh-cni")]
    state_dir: PathBuf,
    /// The socket the CNI plugin connects to (default: <state-dir>/cni.sock).
    #[arg(long)]
    cni_socket: Option<PathBuf>,
    /// The handoff socket ztunnel connects to (default: <state-dir>/ztunnel.sock).
    #[arg(long)]
    handoff_socket: Option<PathBuf>,
    /// Metrics endpoint (/metrics); "none" disables it.
    #[arg(long, default_value = "0.0.0.0:15014")]
    metrics_addr: String,
    /// Self-check period in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    check_interval_ms: u64,
    /// How long a CNI ADD waits for its pod to appear in the source, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pod_wait_ms: u64,
    /// Poll period of the local state file in milliseconds.
    #[arg(long, default_value_t = 100)]
    local_poll_ms: u64,
    /// Capture DNS to a DNS proxy on 15053 in the pod (DESIGN.md 4.4 rule 6). Refused for now:
    /// ztunnel serves no DNS proxy yet, so capturing DNS would break name resolution in every
    /// enrolled pod.
    #[arg(long)]
    dns_capture: bool,
    /// Firewall backend (default: nft when installed, else iptables).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Install the plugin: CNI network config dir.
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Install the plugin: CNI binary dir.
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Install the plugin: the mesh-cni binary to copy (default: next to this binary).
    #[arg(long)]
    cni_plugin_binary: Option<PathBuf>,
    /// The host's /proc, searched for the namespaces of pods that started before the agent
    /// (in a pod without hostPID: a hostPath mount of /proc, e.g. /host/proc).
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.dns_capture {
        anyhow::bail!(
            "--dns-capture: ztunnel serves no DNS proxy on 15053 yet, so capturing DNS would break \
             name resolution in every enrolled pod; leave it off (pods keep resolving directly)"
        );
    }
    let source = match args.source {
        SourceKind::Kubernetes => SourceConfig::Kubernetes(None),
        SourceKind::Local => SourceConfig::Local {
            state_file: args
                .local_state
                .clone()
                .context("--local-state is required")?,
            poll: Duration::from_millis(args.local_poll_ms.max(1)),
        },
    };
    let mut config = AgentConfig::new(&args.node, args.state_dir.clone(), source);
    if let Some(p) = args.cni_socket {
        config.cni_socket = p;
    }
    if let Some(p) = args.handoff_socket {
        config.handoff_socket = p;
    }
    config.metrics_addr = match args.metrics_addr.as_str() {
        "none" | "" => None,
        a => Some(a.parse::<SocketAddr>().context("--metrics-addr")?),
    };
    config.check_interval = Duration::from_millis(args.check_interval_ms.max(10));
    config.pod_wait = Duration::from_millis(args.pod_wait_ms);
    config.proc_root = args.proc_root;
    config.redirect = RedirectOptions {
        dns_capture: args.dns_capture,
        ..RedirectOptions::default()
    };
    config.backend = args.backend.map(|b| match b {
        BackendArg::Nft => Backend::Nft,
        BackendArg::Iptables => Backend::Iptables,
    });
    if let Some(conf_dir) = args.cni_conf_dir {
        let plugin_binary = match args.cni_plugin_binary {
            Some(p) => p,
            None => std::env::current_exe()
                .context("locating this binary")?
                .with_file_name(PLUGIN_TYPE),
        };
        config.install = Some(InstallConfig {
            conf_dir,
            bin_dir: args.cni_bin_dir,
            plugin_binary,
            entry: serde_json::json!({
                "type": PLUGIN_TYPE,
                "agentSocket": config.cni_socket,
            }),
            recheck: Duration::from_secs(10),
        });
    }
    let mut agent = Agent::start(config).context("starting the node agent")?;
    let stop = agent.stopper();
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    std::thread::spawn(move || {
        signals.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(err) => {
                        tracing::warn!(%err, "no SIGTERM handler");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        });
        tracing::info!("signal received, stopping");
        stop();
    });
    agent.wait();
    Ok(())
}
