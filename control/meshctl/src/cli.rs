//! The command line of `meshctl` (DESIGN.md 7, a contract) and the dispatch to the library.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::echo::{self, EchoOptions};
use crate::local::{self, DownOptions, UpOptions};

/// Where `meshctl local` keeps its state unless `--state` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/meshctl-local";

/// `meshctl`: the mesh's command line.
#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "Command line of the mesh: local mode and the echo test application"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The test application: HTTP/1.1 + h2c + gRPC JSON echo, plus a TCP echo.
    Echo(EchoArgs),
    /// The whole mesh on this machine, without Kubernetes.
    #[command(subcommand)]
    Local(LocalCommand),
    /// Waypoints (istio-waypoint Gateways) of a cluster: apply, list, delete.
    #[command(subcommand)]
    Waypoint(crate::waypoint::WaypointCommand),
    /// A node's ztunnel: its config from the admin API.
    #[command(subcommand)]
    Ztunnel(crate::ztunnel_cmd::ZtunnelCommand),
    /// Explains what the mesh does with a connection from a pod to host:port.
    Explain(crate::explain::ExplainArgs),
}

/// `meshctl echo` flags.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// HTTP/1.1, h2c and gRPC port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the plain TCP echo (none unless given).
    #[arg(long)]
    pub tcp_port: Option<u16>,
    /// Version reported in the answers.
    #[arg(long, default_value = "")]
    pub version: String,
    /// HTTP status of every answer.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Wait before answering: `250ms`, `2s`, `1m` (a bare number is seconds).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub delay: Duration,
}

/// `meshctl local` verbs.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Creates the nodes, the fabric, control, and a ztunnel and node agent per node.
    Up {
        /// State directory (one per local cluster).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
        /// Number of nodes (`node-1` ... `node-N`).
        #[arg(long, default_value_t = 2)]
        nodes: u8,
    },
    /// Lists objects of the local cluster.
    Get {
        /// What to list.
        what: GetKind,
        /// Only the object of this name (L7 kinds: httproutes ... referencegrants).
        name: Option<String>,
        /// Only this namespace (pods, services, workloads; default: all).
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
        /// Output format: a table (default) or `json` (Kubernetes-shaped objects).
        #[arg(short = 'o', long = "output")]
        output: Option<OutputFormat>,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// Creates or updates the objects of a YAML file or directory (all or nothing).
    Apply {
        /// File or directory of multi-document YAML.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// Deletes the objects of a YAML file or directory (waits until their pods are gone).
    Delete {
        /// File or directory of multi-document YAML.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// Sets (`key=value`) or removes (`key-`) labels of an object.
    Label {
        /// Kind (`namespace`, `pod`, `service`, `deployment`, ...).
        kind: String,
        /// Object name.
        name: String,
        /// Label changes.
        #[arg(required = true)]
        changes: Vec<String>,
        /// Namespace of a namespaced object (default `default`).
        #[arg(short = 'n', long = "namespace")]
        namespace: Option<String>,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// Runs a command in a pod's network namespace and DNS view: `exec <ns>/<pod> -- CMD...`.
    Exec {
        /// `<namespace>/<pod>`.
        pod: String,
        /// The command and its arguments (passed unchanged, no shell).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// The pod runtime (started by `up`; not for direct use).
    #[command(hide = true)]
    Runtime {
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// Prints the log of a component (`control`, `runtime`, `ztunnel-node-1`, `agent-node-2`) or a pod (`<ns>/<pod>`).
    Logs {
        /// The component.
        component: String,
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
    /// The cluster DNS server (a component `up` starts in node-1's netns; not for users).
    #[command(hide = true)]
    Dns {
        /// State directory given to `up` (the records are `<state>/dns/records.json`).
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
        /// Address to serve on.
        #[arg(long, default_value_t = SocketAddr::from((local::dns::DNS_ADDR, 53)))]
        listen: SocketAddr,
    },
    /// Removes every namespace, link, rule and process `up` made, also after a crash.
    Down {
        /// State directory given to `up`.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state: PathBuf,
    },
}

/// Kinds `meshctl local get` lists.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GetKind {
    /// The nodes.
    Nodes,
    /// The pods.
    Pods,
    /// The services.
    Services,
    /// The pods as mesh workloads (enrolment, identity).
    Workloads,
    /// HTTPRoutes with the status control wrote (Accepted per parent, the reason when invalid).
    #[value(name = "httproutes", alias = "httproute")]
    HttpRoutes,
    /// GRPCRoutes with their status.
    #[value(name = "grpcroutes", alias = "grpcroute")]
    GrpcRoutes,
    /// VirtualServices with their status (validationMessages, Accepted).
    #[value(name = "virtualservices", alias = "virtualservice")]
    VirtualServices,
    /// DestinationRules with their status.
    #[value(name = "destinationrules", alias = "destinationrule")]
    DestinationRules,
    /// RequestAuthentications with their status.
    #[value(name = "requestauthentications", alias = "requestauthentication")]
    RequestAuthentications,
    /// HTTPFaults with their status.
    #[value(name = "httpfaults", alias = "httpfault")]
    HttpFaults,
    /// ReferenceGrants (no status: a malformed one is named in control's log).
    #[value(name = "referencegrants", alias = "referencegrant")]
    ReferenceGrants,
}

impl GetKind {
    /// The Kubernetes kind of an L7 listing, `None` for the others.
    pub fn l7_kind(self) -> Option<&'static str> {
        Some(match self {
            Self::HttpRoutes => "HTTPRoute",
            Self::GrpcRoutes => "GRPCRoute",
            Self::VirtualServices => "VirtualService",
            Self::DestinationRules => "DestinationRule",
            Self::RequestAuthentications => "RequestAuthentication",
            Self::HttpFaults => "HTTPFault",
            Self::ReferenceGrants => "ReferenceGrant",
            Self::Nodes | Self::Pods | Self::Services | Self::Workloads => return None,
        })
    }
}

/// Output formats of `meshctl local get`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    /// Kubernetes-shaped JSON.
    Json,
    /// The same as YAML.
    Yaml,
}

/// `text` (JSON when `output` is given) as `output` asks: YAML converted from the JSON.
fn as_format(text: String, output: Option<OutputFormat>) -> anyhow::Result<String> {
    match output {
        Some(OutputFormat::Yaml) => {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            Ok(serde_yaml_ng::to_string(&v)?)
        }
        _ => Ok(text),
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 250ms, 2s, 1m)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?} (use ms, s or m)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Echo(args) => run_echo(args),
        Command::Waypoint(cmd) => crate::waypoint::run(cmd),
        Command::Ztunnel(cmd) => crate::ztunnel_cmd::run(cmd),
        Command::Explain(args) => crate::explain::run(args),
        Command::Local(LocalCommand::Up { state, nodes }) => {
            let report = local::up(&UpOptions { state, nodes })?;
            println!("{report}");
            Ok(())
        }
        Command::Local(LocalCommand::Get {
            what,
            name,
            namespace,
            output,
            state,
        }) if what.l7_kind().is_some() => {
            let kind = what.l7_kind().unwrap_or_default();
            let format = match output {
                None => local::routes::Format::Table,
                Some(OutputFormat::Json) => local::routes::Format::Json,
                Some(OutputFormat::Yaml) => local::routes::Format::Yaml,
            };
            let (name, ns) = (name.as_deref(), namespace.as_deref());
            print!("{}", local::routes::get(&state, kind, name, ns, format)?);
            Ok(())
        }
        Command::Local(LocalCommand::Get {
            what: GetKind::Nodes,
            output,
            state,
            ..
        }) => {
            print!(
                "{}",
                as_format(local::inspect::get_nodes(&state, output.is_some())?, output)?
            );
            Ok(())
        }
        Command::Local(LocalCommand::Get {
            what,
            namespace,
            output,
            state,
            ..
        }) => {
            let kind = match what {
                GetKind::Services => local::view::Listing::Services,
                GetKind::Workloads => local::view::Listing::Workloads,
                // Nodes and the L7 kinds are handled above.
                _ => local::view::Listing::Pods,
            };
            let ns = namespace.as_deref();
            print!(
                "{}",
                as_format(
                    local::view::get(&state, kind, ns, output.is_some())?,
                    output
                )?
            );
            Ok(())
        }
        Command::Local(LocalCommand::Apply { file, state }) => {
            for line in local::apply::apply(&state, &file)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Local(LocalCommand::Delete { file, state }) => {
            for line in local::apply::delete(&state, &file)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Local(LocalCommand::Label {
            kind,
            name,
            changes,
            namespace,
            state,
        }) => {
            let ns = namespace.as_deref();
            println!(
                "{}",
                local::apply::label(&state, &kind, &name, ns, &changes)?
            );
            Ok(())
        }
        Command::Local(LocalCommand::Exec {
            pod,
            command,
            state,
        }) => {
            // The command's own exit code is ours (DESIGN.md 7).
            std::process::exit(local::view::exec(&state, &pod, &command)?)
        }
        Command::Local(LocalCommand::Runtime { state }) => {
            let dir = std::path::absolute(&state)?;
            Ok(local::runtime::run(&dir)?)
        }
        Command::Local(LocalCommand::Logs { component, state }) => {
            print!("{}", local::inspect::logs(&state, &component)?);
            Ok(())
        }
        Command::Local(LocalCommand::Dns { state, listen }) => {
            Ok(local::dns::server::serve(&state, listen)?)
        }
        Command::Local(LocalCommand::Down { state }) => {
            let report = local::down(&DownOptions { state })?;
            println!("{report}");
            Ok(())
        }
    }
}

fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let opts = EchoOptions {
        version: args.version,
        status: args.status,
        delay: args.delay,
        ..EchoOptions::from_env()
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if let Some(p) = args.tcp_port {
            let tcp = tokio::spawn(echo::tcp::run(SocketAddr::new(any, p)));
            tokio::select! {
                r = echo::run(SocketAddr::new(any, args.port), opts) => r?,
                r = tcp => r??,
            }
        } else {
            echo::run(SocketAddr::new(any, args.port), opts).await?;
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("2h").unwrap_err().contains("unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn the_contract_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "meshctl",
            "echo",
            "--port",
            "9000",
            "--tcp-port",
            "9001",
            "--version",
            "v2",
            "--status",
            "503",
            "--delay",
            "100ms",
        ])
        .unwrap();
        let Command::Echo(e) = cli.command else {
            panic!("not echo")
        };
        assert_eq!((e.port, e.tcp_port, e.status), (9000, Some(9001), 503));
        assert_eq!(e.delay, Duration::from_millis(100));
        let cli = Cli::try_parse_from([
            "meshctl", "local", "up", "--state", "/tmp/x", "--nodes", "3",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Local(LocalCommand::Up { nodes: 3, .. })
        ));
        let cli = Cli::try_parse_from(["meshctl", "local", "down"]).unwrap();
        let Command::Local(LocalCommand::Down { state }) = cli.command else {
            panic!("not down")
        };
        assert_eq!(state, PathBuf::from(DEFAULT_STATE_DIR));
    }
}
