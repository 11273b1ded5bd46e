//! ztunnel's configuration: one typed struct, parsed from flags or environment in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::socket::{CongestionChoice, DEFAULT_TUNNEL_CONGESTION};
use crate::telemetry::LogFormat;

/// Default admin address: loopback only, it can drain the proxy.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15000";
/// Default metrics address (DESIGN.md 3): scraped from the node's network.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:15020";
/// Default readiness address (DESIGN.md 3).
pub const DEFAULT_READINESS_ADDR: &str = "0.0.0.0:15021";
/// Default handoff socket the node agent listens on (DESIGN.md 4.3).
pub const DEFAULT_HANDOFF_SOCKET: &str = "/var/run/mesh/ztunnel.sock";
/// Leaf lifetime when ztunnel signs its own certificates from a CA file (testing only); short like Istio's.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long open tunnels may finish after a drain starts before they are closed.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
/// Identity of control's service account (Istio's `istiod` lives in istio-system too).
pub const DEFAULT_CONTROL_IDENTITY: &str = "spiffe://cluster.local/ns/istio-system/sa/mesh-control";
/// How often the config file is checked for changes.
pub const CONFIG_POLL: Duration = Duration::from_millis(500);

/// Everything ztunnel needs to start.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ztunnel",
    about = "Per-node L4 proxy of the mesh (HBONE mTLS, L4 authorization)"
)]
pub struct Config {
    /// Name of the node this ztunnel serves (pods of other nodes are never handed to it).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,

    /// Local config file (workloads, services, policies; format in control/api/README.md). Re-read when it
    /// changes; an invalid new version is rejected and the previous config stays in force. Required unless
    /// `--control` is given.
    #[arg(
        long,
        env = "ZTUNNEL_CONFIG",
        required_unless_present = "control",
        conflicts_with = "control"
    )]
    pub config: Option<PathBuf>,

    /// TESTING ONLY: PEM certificate of a CA whose key ztunnel may use to sign its own workload certificates.
    /// In Kubernetes, certificates come from control's CA instead.
    #[arg(long, requires = "ca_key", required_unless_present = "control")]
    pub ca_cert: Option<PathBuf>,

    /// TESTING ONLY: PEM private key of `--ca-cert`.
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,

    /// `host:port` of control's gRPC endpoint (config stream and CA, port 15012), resolved once at start.
    /// Replaces `--config`; certificates come from control's CA unless `--ca-cert/--ca-key` are given.
    #[arg(long, env = "ZTUNNEL_CONTROL", requires_all = ["token_file", "control_ca"])]
    pub control: Option<String>,

    /// File holding ztunnel's service-account token for control (re-read at every connection).
    #[arg(long, env = "ZTUNNEL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM root(s) control's certificate must chain to (the mesh root).
    #[arg(long, env = "ZTUNNEL_CONTROL_CA")]
    pub control_ca: Option<PathBuf>,

    /// SPIFFE identity control must prove.
    #[arg(long, default_value = DEFAULT_CONTROL_IDENTITY)]
    pub control_identity: String,

    /// Trust domain of workload identities.
    #[arg(long, default_value = mesh_identity::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// Unix SOCK_SEQPACKET socket of the node agent that hands pod network namespaces over.
    #[arg(long, default_value = DEFAULT_HANDOFF_SOCKET)]
    pub handoff_socket: PathBuf,

    /// Admin API (config dump, logging, drain).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Prometheus metrics.
    #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Readiness probe.
    #[arg(long, default_value = DEFAULT_READINESS_ADDR)]
    pub readiness_addr: SocketAddr,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Lifetime of self-signed (testing) leaf certificates.
    #[arg(long, value_parser = parse_secs, default_value = "86400")]
    pub cert_lifetime: Duration,

    /// Drain period for open connections on shutdown, in seconds.
    #[arg(long, value_parser = parse_secs, default_value = "5")]
    pub drain: Duration,

    /// Data-path worker threads, each with its own listeners and HBONE pools (0 = one per core).
    /// Two, like Istio's ztunnel: a node proxy should leave the cores to the workloads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,

    /// TCP congestion control of the sockets ztunnel owns on the tunnel path: HBONE connections,
    /// the 15001/15008 listeners and connections to the pod's app (a name from
    /// /proc/sys/net/ipv4/tcp_available_congestion_control, or `kernel` for the node's default).
    /// CUBIC by default: BBR without an `fq` qdisc paces from a timer and halved a tunnel's
    /// throughput in the benchmarks. Checked at start; if the kernel refuses it, they keep the
    /// default and a warning says why.
    #[arg(long, env = "ZTUNNEL_TUNNEL_CONGESTION", default_value = DEFAULT_TUNNEL_CONGESTION)]
    pub tunnel_congestion: CongestionChoice,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}
