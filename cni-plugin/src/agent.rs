//! The node agent (`mesh-cni-agent`): decides enrolment from labels, installs and removes
//! capture, hands pods to ztunnel, keeps it all true (self-check) and installs the plugin.
//!
//! [`Agent::start`] runs the startup reconcile (records of known sandboxes + the source's
//! initial state -> rules re-applied, stale ones removed, the handoff server seeded so
//! ztunnel's first snapshot names every enrolled pod), then serves the CNI socket and runs the
//! reconciler loop on its own thread until the agent is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::handoff_server::{HandoffServerError, ServerConfig};
use crate::netns::NetnsError;
use crate::protocol::{CniReply, CniRequest};
use crate::rules::{Backend, RedirectOptions, RulesError};

pub mod cluster;
pub mod cni_server;
pub mod discover;
pub mod enforce;
pub mod install;
pub mod listeners;
pub mod metrics;
pub mod model;
pub mod reconciler;
pub mod records;
pub mod source;
mod startup;

pub use model::{Decision, NamespaceMeta, PodMeta, SourceEvent, decide};
pub use source::local::{LocalSource, LocalState, LocalStatus};
pub use source::{EventSink, PodSource};

/// Default period of the self-check: drift is rare, and each round runs one `nft` per pod.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Default wait of a CNI ADD for its pod to appear in the source (the API server normally
/// has it before the kubelet runs CNI; this covers a lagging watch).
pub const DEFAULT_POD_WAIT: Duration = Duration::from_secs(5);
/// Default wait at startup for the source's initial state before reconciling anyway.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A message to the reconciler loop.
#[derive(Debug)]
pub enum Msg {
    /// From the pod source.
    Source(SourceEvent),
    /// From the CNI socket, with the channel for the answer.
    Cni(CniRequest, Sender<CniReply>),
    /// Stop the loop.
    Stop,
}

/// Where pod events come from.
pub enum SourceConfig {
    /// A cluster-state file (local mode, tests), polled every `poll`.
    Local {
        /// The state file.
        state_file: PathBuf,
        /// Poll period.
        poll: Duration,
    },
    /// The Kubernetes API; `None` infers the client config.
    Kubernetes(Option<Box<kube::Config>>),
    /// A source built by the caller.
    Custom(Arc<dyn PodSource>),
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Local { state_file, .. } => write!(f, "Local({})", state_file.display()),
            SourceConfig::Kubernetes(_) => f.write_str("Kubernetes"),
            SourceConfig::Custom(s) => write!(f, "Custom({})", s.name()),
        }
    }
}

/// Everything the agent is started with.
#[derive(Debug)]
pub struct AgentConfig {
    /// This node's name (pods are filtered on it).
    pub node_name: String,
    /// The socket the CNI plugin connects to.
    pub cni_socket: PathBuf,
    /// The handoff socket ztunnel connects to.
    pub handoff_socket: PathBuf,
    /// Where pod records and the local status file live.
    pub state_dir: PathBuf,
    /// The pod source.
    pub source: SourceConfig,
    /// Metrics endpoint address (`None`: no endpoint).
    pub metrics_addr: Option<SocketAddr>,
    /// Self-check period.
    pub check_interval: Duration,
    /// How long a CNI ADD waits for its pod to appear in the source.
    pub pod_wait: Duration,
    /// Startup wait for the source's initial state.
    pub sync_timeout: Duration,
    /// Install the plugin into the node's CNI config (`None`: do not).
    pub install: Option<install::InstallConfig>,
    /// Rule options (DNS capture).
    pub redirect: RedirectOptions,
    /// Firewall backend (`None`: nft if present, else iptables).
    pub backend: Option<Backend>,
    /// Handoff timeouts.
    pub handoff: ServerConfig,
    /// The host's `/proc` (`/host/proc` in the DaemonSet): where pods that started before the
    /// agent are searched for by their processes' namespaces.
    pub proc_root: PathBuf,
}

impl AgentConfig {
    /// A config with the defaults for `node`, sockets and state under `state_dir`.
    pub fn new(node_name: &str, state_dir: PathBuf, source: SourceConfig) -> Self {
        Self {
            node_name: node_name.to_string(),
            cni_socket: state_dir.join("cni.sock"),
            handoff_socket: state_dir.join("ztunnel.sock"),
            state_dir,
            source,
            metrics_addr: None,
            check_interval: DEFAULT_CHECK_INTERVAL,
            pod_wait: DEFAULT_POD_WAIT,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
            install: None,
            redirect: RedirectOptions::default(),
            backend: None,
            handoff: ServerConfig::default(),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Errors of starting the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The node's own netns could not be opened.
    #[error("node agent: {0}")]
    Netns(#[from] NetnsError),
    /// No firewall tool.
    #[error("node agent: {0}")]
    Rules(#[from] RulesError),
    /// The state directory is unusable.
    #[error("node agent: {0}")]
    Records(#[from] records::RecordsError),
    /// The source could not start.
    #[error("node agent: {0}")]
    Source(#[from] source::SourceError),
    /// The handoff socket could not be opened.
    #[error("node agent: {0}")]
    Handoff(#[from] HandoffServerError),
    /// The CNI socket could not be opened.
    #[error("node agent: {0}")]
    Cni(#[from] cni_server::CniServerError),
    /// The metrics endpoint could not be started.
    #[error("node agent: metrics endpoint {addr}: {source} (port taken?)")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The plugin could not be installed.
    #[error("node agent: {0}")]
    Install(#[from] install::InstallError),
    /// A thread could not be started.
    #[error("node agent: cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// A running agent; dropping it stops it (the CNI config entry stays, see [`install`]).
pub struct Agent {
    tx: Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    metrics: metrics::Metrics,
    metrics_addr: Option<SocketAddr>,
    // Drop order: stop accepting CNI requests before the loop goes away.
    _cni: cni_server::CniServer,
    _installer: Option<install::Installer>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Agent {
    /// Starts the agent; returns once the startup reconcile is done and the sockets listen.
    pub fn start(config: AgentConfig) -> Result<Self, AgentError> {
        let (tx, rx) = mpsc::channel();
        let metrics = metrics::Metrics::new();
        let prepared = startup::prepare(&config, &tx, &rx, metrics.clone())?;
        let (runtime, metrics_addr) = match config.metrics_addr {
            Some(addr) => {
                let (rt, bound) = start_metrics(addr, metrics.clone())?;
                (Some(rt), Some(bound))
            }
            None => (None, None),
        };
        let reply_timeout = config.pod_wait + config.handoff.ack_timeout + Duration::from_secs(5);
        let cni = cni_server::CniServer::bind(&config.cni_socket, tx.clone(), reply_timeout)?;
        let installer = config.install.map(install::Installer::start).transpose()?;
        let thread = std::thread::Builder::new()
            .name("reconciler".into())
            .spawn(move || run_loop(prepared, &rx))
            .map_err(AgentError::Thread)?;
        tracing::info!(node = %config.node_name, "node agent ready");
        Ok(Self {
            tx,
            thread: Some(thread),
            metrics,
            metrics_addr,
            _cni: cni,
            _installer: installer,
            _runtime: runtime,
        })
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The bound metrics address, if the endpoint runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Blocks until the agent's loop ends (it only ends when the agent is stopped).
    pub fn wait(&mut self) {
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("reconciler thread panicked");
        }
    }

    /// A handle that stops the agent from another thread (e.g. a signal handler).
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let tx = self.tx.clone();
        move || {
            let _ = tx.send(Msg::Stop);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        self.wait();
    }
}

fn start_metrics(
    addr: SocketAddr,
    metrics: metrics::Metrics,
) -> Result<(tokio::runtime::Runtime, SocketAddr), AgentError> {
    let err = |source| AgentError::Metrics { addr, source };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("agent-metrics")
        .enable_all()
        .build()
        .map_err(err)?;
    let listener = rt.block_on(metrics::bind(addr)).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    rt.spawn(metrics::serve(listener, metrics));
    Ok((rt, bound))
}

fn run_loop(mut rec: reconciler::Reconciler, rx: &Receiver<Msg>) {
    loop {
        let wait = rec.next_wakeup().saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Source(event)) => rec.on_source(event),
            Ok(Msg::Cni(request, reply)) => rec.on_cni(request, reply),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= rec.next_wakeup() {
            rec.tick();
        }
    }
    tracing::info!("node agent stopped");
}
