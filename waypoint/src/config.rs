//! The waypoint's configuration: one typed struct, parsed from flags or environment in `main`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ztunnel::socket::{CongestionChoice, DEFAULT_TUNNEL_CONGESTION};
use ztunnel::telemetry::LogFormat;

/// HBONE listener (DESIGN.md 3).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:15008";
/// Admin address: loopback only, it can drain the proxy.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:15000";
/// Metrics address (DESIGN.md 3).
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:15020";
/// Readiness address (DESIGN.md 3).
pub const DEFAULT_READINESS_ADDR: &str = "0.0.0.0:15021";
/// How often the config file and the routes directory are checked for changes: fast enough that
/// a route change applies within a second, cheap (a few `stat` calls).
pub const CONFIG_POLL: Duration = Duration::from_millis(500);
/// How long a tunnel may stay silent before it is treated as opaque TCP when the service port
/// declares no `appProtocol` (server-first protocols send nothing); Istio uses 100 ms too.
pub const DEFAULT_SNIFF_TIMEOUT_MS: u64 = 100;

/// Everything the waypoint needs to start.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "waypoint",
    about = "L7 proxy of the mesh: HBONE in, HTTPRoute/GRPCRoute routing, resilience, telemetry, HBONE out"
)]
pub struct Config {
    /// Mesh config file (workloads, services, policies; the ztunnel format of
    /// control/api/README.md). Re-read when it changes; an invalid version is rejected and the
    /// previous one stays in force.
    #[arg(
        long,
        env = "WAYPOINT_CONFIG",
        required_unless_present = "control",
        conflicts_with = "control"
    )]
    pub config: Option<PathBuf>,

    /// Directory of Kubernetes YAML with HTTPRoute, GRPCRoute and HTTPFault objects (`*.yaml`,
    /// `*.yml`, `*.json`). Re-read when a file changes; an invalid set is rejected as a whole with
    /// the reasons logged and shown in `/config_dump`, and the previous routes stay in force.
    #[arg(long, env = "WAYPOINT_ROUTES", conflicts_with = "control")]
    pub routes: Option<PathBuf>,

    /// `host:port` of control's gRPC endpoint (15012): the config stream (workloads, services,
    /// policies and the L7 objects of this waypoint's Gateway) and, without `--ca-cert`, the CA.
    /// Replaces `--config` and `--routes`.
    #[arg(long, env = "WAYPOINT_CONTROL", requires_all = ["token_file", "control_ca"])]
    pub control: Option<String>,

    /// Service-account token presented to control (re-read at every connection).
    #[arg(long, env = "WAYPOINT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM roots control's certificate must chain to.
    #[arg(long, env = "WAYPOINT_CONTROL_CA")]
    pub control_ca: Option<PathBuf>,

    /// Identity control must prove.
    #[arg(long, default_value = ztunnel::config::DEFAULT_CONTROL_IDENTITY)]
    pub control_identity: String,

    /// TESTING ONLY: PEM certificate of a CA whose key the waypoint uses to sign its own
    /// certificate. In Kubernetes, certificates come from control's CA instead.
    #[arg(long, requires = "ca_key", required_unless_present = "control")]
    pub ca_cert: Option<PathBuf>,

    /// TESTING ONLY: PEM private key of `--ca-cert`.
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,

    /// Trust domain of identities.
    #[arg(long, default_value = mesh_identity::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// Namespace of the waypoint (its identity and its Gateway).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// Service account of the waypoint: its identity is
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "waypoint")]
    pub service_account: String,

    /// Name of the waypoint's Gateway: routes with this Gateway as parent apply to every service
    /// it serves. Defaults to the service account.
    #[arg(long, env = "GATEWAY_NAME")]
    pub gateway_name: Option<String>,

    /// The waypoint's own address (upstream HBONE connections are pooled per source address).
    #[arg(long, env = "POD_IP")]
    pub ip: Option<IpAddr>,

    /// HBONE listen address.
    #[arg(long, default_value = DEFAULT_LISTEN_ADDR)]
    pub listen: SocketAddr,

    /// Admin API (config dump, logging, drain).
    #[arg(long, default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Prometheus metrics.
    #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Readiness probe.
    #[arg(long, default_value = DEFAULT_READINESS_ADDR)]
    pub readiness_addr: SocketAddr,

    /// Log format (access logs included).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Protocol sniffing timeout in milliseconds (ports without `appProtocol`).
    #[arg(long, default_value_t = DEFAULT_SNIFF_TIMEOUT_MS)]
    pub sniff_timeout_ms: u64,

    /// Lifetime of self-signed (testing) certificates, in seconds.
    #[arg(long, value_parser = parse_secs, default_value = "86400")]
    pub cert_lifetime: Duration,

    /// Drain period for open connections on shutdown, in seconds.
    #[arg(long, value_parser = parse_secs, default_value = "5")]
    pub drain: Duration,

    /// PEM file of an extra CA for `https` jwksUri servers of RequestAuthentications (the
    /// system's roots are trusted too).
    #[arg(long, env = "WAYPOINT_JWKS_CA")]
    pub jwks_ca: Option<PathBuf>,

    /// Data-path workers: threads with their own runtime, HBONE listener and upstream pools
    /// (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,

    /// TCP congestion control of the waypoint's HBONE sockets, both the connections it accepts
    /// and the ones it opens to destinations (a name from
    /// /proc/sys/net/ipv4/tcp_available_congestion_control, or `kernel` for the node's default).
    /// CUBIC by default, like ztunnel's `--tunnel-congestion`: BBR without an `fq` qdisc paces
    /// from a timer and reorders on veth. Checked at start; if the kernel refuses it, the sockets
    /// keep the default and a warning says why.
    #[arg(long, env = "WAYPOINT_TUNNEL_CONGESTION", default_value = DEFAULT_TUNNEL_CONGESTION)]
    pub tunnel_congestion: CongestionChoice,
}

impl Config {
    /// The waypoint's SPIFFE identity.
    pub fn identity(&self) -> mesh_identity::SpiffeId {
        mesh_identity::SpiffeId::new(
            self.trust_domain.clone(),
            self.namespace.clone(),
            self.service_account.clone(),
        )
    }

    /// (namespace, name) of the waypoint's Gateway.
    pub fn gateway(&self) -> (String, String) {
        let name = self
            .gateway_name
            .clone()
            .unwrap_or_else(|| self.service_account.clone());
        (self.namespace.clone(), name)
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}
