//! `meshctl explain <ns>/<pod> <host>:<port>` (beyond Istio): what happens to a connection from a
//! pod, from the config the ztunnels run: the source workload, node and ztunnel; how the
//! destination resolves (service VIP -> endpoints, workload IP, or outside the mesh ->
//! passthrough); the waypoint on the path (service- or workload-bound) and its policies; at each
//! destination ztunnel the PeerAuthentication mode, the L4 policies and the verdict with the
//! policy that decided ([`path`] calls `mesh_api`'s evaluators).
//!
//! The config comes from ztunnels' `/config_dump` (local cluster, `--netns`, or a cluster, see
//! [`crate::ztunnel_cmd::Target`]): the source's node first (workloads and services are the same
//! everywhere), then each destination node's (policies are sent only to the node enforcing them).
//! `--config FILE` works offline from a mesh config file (`control/api/README.md`) or a saved
//! `meshctl ztunnel config <node> -o json`.

pub mod path;
pub mod report;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use mesh_api::{ConfigSnapshot, Protocol};

use crate::cli::DEFAULT_STATE_DIR;
use crate::ztunnel_cmd::{ConfigDump, TargetArgs, ZtunnelError, Ztunnels};
use path::{Configs, Dest, Peer};
pub use report::Explanation;

/// Errors of `meshctl explain`.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The pod argument is not `<ns>/<pod>`.
    #[error("{0:?} is not <namespace>/<pod>")]
    BadPod(String),
    /// The destination argument is not `<host>:<port>`.
    #[error("{0:?} is not <host>:<port> (a port 1-65535; IPv6 as [addr]:port)")]
    BadDestination(String),
    /// The source pod is not in the config.
    #[error("no pod {pod} in the mesh config ({known})")]
    UnknownPod {
        /// Asked for.
        pod: String,
        /// What there is.
        known: String,
    },
    /// `--config` could not be used.
    #[error("cannot use config file {path}: {detail}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A ztunnel could not be read.
    #[error(transparent)]
    Ztunnel(Box<ZtunnelError>),
}

impl From<ZtunnelError> for ExplainError {
    fn from(e: ZtunnelError) -> Self {
        Self::Ztunnel(Box::new(e))
    }
}

/// `meshctl explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The client pod, `<namespace>/<pod>`.
    pub pod: String,
    /// The destination, `<host>:<port>` (service name, service VIP, pod IP or any address).
    pub destination: String,
    /// Explain from this file instead of live ztunnels: a mesh config file (YAML) or a saved
    /// `meshctl ztunnel config <node> -o json`.
    #[arg(long, conflicts_with_all = ["local", "state", "netns", "context"])]
    pub config: Option<PathBuf>,
    /// `json` for the explanation as JSON.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    pub output: Option<String>,
    /// Where the ztunnels are.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Parses `<ns>/<pod>`.
pub fn parse_pod(s: &str) -> Result<(String, String), ExplainError> {
    match s.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_owned(), pod.to_owned()))
        }
        _ => Err(ExplainError::BadPod(s.to_owned())),
    }
}

/// Parses `<host>:<port>` (`[v6]:port` for IPv6).
pub fn parse_destination(s: &str) -> Result<(String, u16), ExplainError> {
    let bad = || ExplainError::BadDestination(s.to_owned());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Reads `--config FILE`: a config dump (JSON with `config`) or a mesh config file.
pub fn load_config_file(path: &Path) -> Result<ConfigSnapshot, ExplainError> {
    let err = |detail: String| ExplainError::ConfigFile {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && v.get("config").is_some()
    {
        return ConfigDump::from_value(v).map(|d| d.config).map_err(err);
    }
    mesh_api::file::parse(&text).map_err(|e| err(e.to_string()))
}

/// The nodes whose ztunnel config matters for the connection (destination endpoints and the
/// waypoint), besides the source's.
pub fn nodes_to_read(cfg: &ConfigSnapshot, ns: &str, host: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    let mut add = |n: &str| {
        if !n.is_empty() && !nodes.iter().any(|x| x == n) {
            nodes.push(n.to_owned());
        }
    };
    match path::destination(cfg, ns, host) {
        Dest::Service(s, _) => {
            cfg.service_endpoints(s).for_each(|w| add(&w.node));
        }
        Dest::Workload(w, _) => add(&w.node),
        Dest::Outside(_) => {}
    }
    nodes
}

/// A waypoint on the path: its reference, what bound it (`service`/`workload`), the service.
type Via<'a> = (
    &'a mesh_api::WaypointRef,
    &'static str,
    Option<&'a mesh_api::Service>,
);
/// An endpoint the connection can end at: workload, address, target port.
type Target<'a> = (&'a mesh_api::Workload, std::net::IpAddr, u16);

/// Explains a connection from pod `ns/pod` to `host:port` with `configs`; `config_source` says
/// where the config came from.
pub fn explain(
    configs: &Configs<'_>,
    config_source: &str,
    (ns, pod): (&str, &str),
    (host, port): (&str, u16),
) -> Result<Explanation, ExplainError> {
    let cfg = configs.main;
    let src = path::source(cfg, ns, pod)?;
    let in_mesh = src.protocol == Protocol::Hbone;
    let src_ip = src.addresses.first().copied();
    let source = report::SourceInfo {
        pod: format!("{ns}/{pod}"),
        address: src_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".to_owned()),
        node: if src.node.is_empty() {
            "-".to_owned()
        } else {
            src.node.clone()
        },
        ztunnel: if in_mesh {
            format!("captured by the ztunnel of node {}", src.node)
        } else {
            "not in the mesh (protocol TCP): no ztunnel captures its traffic".to_owned()
        },
        identity: in_mesh.then(|| src.identity().principal()),
    };
    let dest = path::destination(cfg, ns, host);
    let mut out = Explanation {
        config_source: config_source.to_owned(),
        source,
        destination: path::destination_info(&dest, host, port),
        waypoint: None,
        endpoints: Vec::new(),
        verdict: String::new(),
        summary: String::new(),
        notes: Vec::new(),
    };
    let Some(src_ip) = src_ip else {
        return Ok(finish(
            out,
            "deny",
            "the source pod has no address".to_owned(),
        ));
    };
    let client = Peer {
        identity: in_mesh.then(|| src.identity()),
        ip: src_ip,
        waypoint_uid: None,
    };
    let (waypoint, targets): (Option<Via<'_>>, Vec<Target<'_>>) = match dest {
        Dest::Outside(_) => {
            let how = if in_mesh {
                "the source ztunnel passes it through as plain TCP (no mTLS, no policy)"
            } else {
                "plain TCP from a pod outside the mesh"
            };
            return Ok(finish(
                out,
                "passthrough",
                format!("{host} is not a service or workload of the mesh: {how}"),
            ));
        }
        Dest::Service(s, vip) => {
            let wp = s.waypoint.as_ref().filter(|_| in_mesh);
            let Some(sp) = s.ports.iter().find(|p| p.port == port) else {
                if wp.is_none() {
                    return Ok(finish(
                        out,
                        "deny",
                        format!(
                            "service {} has no port {port}: the source ztunnel refuses the connection",
                            s.hostname
                        ),
                    ));
                }
                out.notes
                    .push(format!("service {} declares no port {port}", s.hostname));
                return waypoint_only(out, cfg, wp, s, &client, SocketAddr::new(vip, port));
            };
            let eps = cfg
                .service_endpoints(s)
                .filter_map(|w| {
                    w.addresses
                        .iter()
                        .find(|a| a.is_ipv4() == vip.is_ipv4())
                        .map(|a| (w, *a, sp.target_port))
                })
                .collect();
            (wp.map(|w| (w, "service", Some(s))), eps)
        }
        Dest::Workload(w, ip) => {
            let wp = w.waypoint.as_ref().filter(|_| in_mesh);
            (wp.map(|x| (x, "workload", None)), vec![(w, ip, port)])
        }
    };
    let mut peer = client.clone();
    if let Some((wp, bound_to, svc)) = waypoint {
        let dst = SocketAddr::new(
            out.destination
                .address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .unwrap_or(src_ip),
            port,
        );
        match path::waypoint_hop(cfg, wp, bound_to, svc, &client, dst) {
            Ok((hop, relay)) => {
                let denied = hop.verdict == "deny";
                let reason = format!("waypoint {}: {}", hop.name, hop.reason);
                out.waypoint = Some(hop);
                if denied {
                    return Ok(finish(out, "deny", reason));
                }
                peer = relay;
            }
            Err(reason) => return Ok(finish(out, "deny", reason)),
        }
    }
    if targets.is_empty() {
        return Ok(finish(
            out,
            "deny",
            "the service has no endpoint: the connection is refused".to_owned(),
        ));
    }
    for (w, ip, p) in targets {
        out.endpoints.push(path::endpoint_hop(
            configs.for_node(&w.node),
            w,
            ip,
            p,
            &peer,
        ));
    }
    let denied = out.endpoints.iter().filter(|e| e.verdict == "deny").count();
    let (verdict, summary) = match denied {
        0 => (
            "allow",
            out.endpoints
                .iter()
                .map(|e| format!("{}: {}", e.pod, e.reason))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        n if n == out.endpoints.len() => (
            "deny",
            out.endpoints
                .iter()
                .map(|e| format!("{}: {}", e.pod, e.reason))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => (
            "partial",
            format!(
                "{denied} of {} endpoints deny; see each endpoint",
                out.endpoints.len()
            ),
        ),
    };
    Ok(finish(out, verdict, summary))
}

/// A waypoint-bound service connection on a port the service does not declare: the waypoint
/// decides (it gets the VIP:port as dialled).
fn waypoint_only(
    mut out: Explanation,
    cfg: &ConfigSnapshot,
    wp: Option<&mesh_api::WaypointRef>,
    svc: &mesh_api::Service,
    client: &Peer,
    dst: SocketAddr,
) -> Result<Explanation, ExplainError> {
    let Some(wp) = wp else {
        return Ok(finish(out, "deny", "no route".to_owned()));
    };
    match path::waypoint_hop(cfg, wp, "service", Some(svc), client, dst) {
        Ok((hop, _)) => {
            let reason = format!(
                "the waypoint gets the connection but the service has no such port: {}",
                hop.reason
            );
            out.waypoint = Some(hop);
            Ok(finish(out, "deny", reason))
        }
        Err(reason) => Ok(finish(out, "deny", reason)),
    }
}

fn finish(mut out: Explanation, verdict: &str, summary: String) -> Explanation {
    out.verdict = verdict.to_owned();
    out.summary = summary;
    out
}

/// Runs `meshctl explain` and prints the result.
pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let (ns, pod) = parse_pod(&args.pod)?;
    let (host, port) = parse_destination(&args.destination)?;
    let explanation = match &args.config {
        Some(file) => {
            let cfg = load_config_file(file)?;
            let by_node = HashMap::new();
            let configs = Configs {
                main: &cfg,
                by_node: &by_node,
            };
            explain(
                &configs,
                &format!("file {}", file.display()),
                (&ns, &pod),
                (&host, port),
            )?
        }
        None => {
            let rt = crate::waypoint::client::runtime()?;
            let target = args.target.target(Path::new(DEFAULT_STATE_DIR));
            rt.block_on(explain_live(
                Ztunnels::new(target),
                (&ns, &pod),
                (&host, port),
            ))?
        }
    };
    match args.output {
        Some(_) => println!("{}", serde_json::to_string_pretty(&explanation)?),
        None => print!("{}", explanation.text()),
    }
    Ok(())
}

/// Explains from live ztunnels: any ztunnel's config to find the source pod, then its node's
/// and every destination node's.
pub async fn explain_live(
    mut z: Ztunnels,
    (ns, pod): (&str, &str),
    (host, port): (&str, u16),
) -> Result<Explanation, ExplainError> {
    let mut by_node: HashMap<String, ConfigSnapshot> = HashMap::new();
    let (first, dump) = z.dump(None).await?;
    let first_cfg = dump.config.clone();
    let src_node = path::source(&first_cfg, ns, pod)?.node.clone();
    by_node.insert(first.clone(), first_cfg);
    let main_node = if src_node.is_empty() || by_node.contains_key(&src_node) {
        first.clone()
    } else {
        let (n, d) = z.dump(Some(&src_node)).await?;
        by_node.insert(n.clone(), d.config.clone());
        n
    };
    let main = by_node.get(&main_node).cloned().unwrap_or_default();
    for node in nodes_to_read(&main, ns, host) {
        if !by_node.contains_key(&node) {
            let (n, d) = z.dump(Some(&node)).await?;
            by_node.insert(n, d.config.clone());
        }
    }
    let source = format!("ztunnel config dumps ({})", {
        let mut nodes: Vec<&str> = by_node.keys().map(String::as_str).collect();
        nodes.sort_unstable();
        nodes.join(", ")
    });
    let configs = Configs {
        main: &main,
        by_node: &by_node,
    };
    explain(&configs, &source, (ns, pod), (host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "meshctl",
            "explain",
            "shop/client",
            "web:80",
            "--config",
            "f.yaml",
            "-o",
            "json",
        ])
        .unwrap();
        let Command::Explain(a) = cli.command else {
            panic!("not explain")
        };
        assert_eq!(
            (a.pod.as_str(), a.destination.as_str()),
            ("shop/client", "web:80")
        );
        assert_eq!(a.config, Some(PathBuf::from("f.yaml")));
        assert!(
            Cli::try_parse_from([
                "meshctl",
                "explain",
                "shop/client",
                "web:80",
                "--config",
                "f",
                "--local"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["meshctl", "explain", "shop/client"]).is_err());
        assert_eq!(
            parse_destination("[2001:db8::1]:443").unwrap(),
            ("[2001:db8::1]".to_owned(), 443)
        );
    }
}
