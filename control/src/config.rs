//! mesh-control's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default gRPC address (DESIGN.md 3).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:15012";
/// Default leaf lifetime (DESIGN.md 4.2: short, 24 h).
pub const DEFAULT_CERT_LIFETIME_SECS: &str = "86400";

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mesh-control",
    about = "The mesh controller: config stream and CA for the proxies"
)]
pub enum Command {
    /// Runs the controller.
    Serve(Box<ServeConfig>),
    /// Prints a local-mode token for a service account (signed with the controller's token key).
    Token(TokenConfig),
}

/// `mesh-control serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Directory of Kubernetes YAML to serve (watched for changes): local mode and tests.
    #[arg(
        long,
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    pub config_dir: Option<PathBuf>,
    /// Watch the Kubernetes API (in-cluster config or KUBECONFIG) and check tokens with TokenReview.
    #[arg(long)]
    pub kubernetes: bool,
    /// CA directory: Istio-style cacerts (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem), or the root
    /// control generated at first start (root-cert.pem, root-key.pem), created when empty.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Key of local-mode tokens (created when missing); required without `--kubernetes`.
    #[arg(long, required_unless_present = "kubernetes")]
    pub token_key: Option<PathBuf>,
    /// gRPC address.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Trust domain of identities.
    #[arg(long, default_value = mesh_identity::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
    /// Namespace whose policies are mesh-wide.
    #[arg(long, default_value = mesh_api::model::DEFAULT_ROOT_NAMESPACE)]
    pub root_namespace: String,
    /// Namespace of control's own service account (its serving identity).
    #[arg(long, default_value = "istio-system")]
    pub namespace: String,
    /// Control's own service account.
    #[arg(long, default_value = "mesh-control")]
    pub service_account: String,
    /// `<namespace>/<service account>` of ztunnels: the only callers that may subscribe to node config and ask
    /// for other pods' certificates.
    #[arg(long, default_value = "istio-system/ztunnel", value_parser = parse_sa)]
    pub ztunnel_sa: (String, String),
    /// Lifetime of workload certificates, in seconds.
    #[arg(long, default_value = DEFAULT_CERT_LIFETIME_SECS, value_parser = parse_secs)]
    pub cert_lifetime: Duration,
    /// Image of the waypoints deployed for `istio-waypoint` Gateways (`--kubernetes` only).
    #[arg(long, default_value = crate::deployer::render::DEFAULT_IMAGE)]
    pub waypoint_image: String,
    /// `host:port` by which the waypoints it deploys reach it (`--kubernetes` only; default
    /// `mesh-control.<namespace>.svc:<port of --listen>`, the Service of `deploy/control`).
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Local mode (`--config-dir`): directory where control writes the status of the L7 objects it checks
    /// (`<Kind>/<namespace>/<name>.json`, a status apply body; emptied at start). In Kubernetes the status goes to
    /// the objects' status subresource instead.
    #[arg(long, conflicts_with = "kubernetes")]
    pub status_dir: Option<PathBuf>,
    /// How often the config directory is checked, in seconds.
    #[arg(long, default_value = "0.2", value_parser = parse_secs)]
    pub poll: Duration,
}

impl ServeConfig {
    /// [`Self::advertise_address`] or its default.
    pub fn advertised_address(&self) -> String {
        self.advertise_address.clone().unwrap_or_else(|| {
            format!("mesh-control.{}.svc:{}", self.namespace, self.listen.port())
        })
    }
}

/// `mesh-control token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenConfig {
    /// Key file of `serve --token-key`.
    #[arg(long)]
    pub token_key: PathBuf,
    /// `<namespace>/<service account>` the token stands for.
    #[arg(long, value_parser = parse_sa)]
    pub service_account: (String, String),
    /// Node the token is bound to (ztunnels need one).
    #[arg(long)]
    pub node: Option<String>,
}

fn parse_sa(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() => Ok((ns.into(), sa.into())),
        _ => Err(format!("`{s}` is not <namespace>/<service account>")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds"))
}
