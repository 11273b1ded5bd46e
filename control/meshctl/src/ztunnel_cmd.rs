//! `meshctl ztunnel config <node> [workloads|services|policies|certificates] [-o json]`: a
//! ztunnel's view of the mesh, read from its admin API (`/config_dump` on 127.0.0.1:15000 of the
//! ztunnel's netns, DESIGN.md 3).
//!
//! Where the ztunnel is ([`Target`]): in a cluster, the pod of the ztunnel DaemonSet on that node,
//! reached through a kube-rs port-forward ([`fetch::get_in_cluster`]); in local mode, the node's
//! network namespace, entered on a short-lived thread to open the socket
//! ([`fetch::get_in_netns`]). `--netns NAME` reaches a ztunnel in any named netns.

pub mod dump;
pub mod fetch;
pub mod table;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

pub use dump::{ConfigDump, Section};

use crate::cli::DEFAULT_STATE_DIR;
use crate::local::network::{node_name, node_netns};
use crate::local::state::ClusterState;
use crate::waypoint::client;

/// Namespace of the ztunnel DaemonSet (`deploy/ztunnel`).
pub const DEFAULT_ZTUNNEL_NAMESPACE: &str = "istio-system";

/// Errors of reaching and reading a ztunnel.
#[derive(Debug, thiserror::Error)]
pub enum ZtunnelError {
    /// `--local` without a local cluster.
    #[error(
        "no local cluster in state directory {0}; start one with `meshctl local up --state {0}`"
    )]
    NoLocalCluster(String),
    /// The local state file is unusable.
    #[error(transparent)]
    State(#[from] crate::local::state::StateError),
    /// No such node in the local cluster.
    #[error("no node {node:?} in the local cluster; nodes: {known}")]
    UnknownNode {
        /// Asked for.
        node: String,
        /// The nodes there are.
        known: String,
    },
    /// The network namespace could not be opened or entered.
    #[error(
        "cannot enter network namespace {netns}: {error} (reaching a local ztunnel needs root)"
    )]
    Netns {
        /// The namespace.
        netns: String,
        /// Why.
        error: Box<mesh_cni::netns::NetnsError>,
    },
    /// Nothing answers on the admin port.
    #[error(
        "cannot connect to the admin API (127.0.0.1:15000) of {who}: {error}; is ztunnel running there?"
    )]
    Connect {
        /// Which ztunnel.
        who: String,
        /// Why.
        error: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("admin API of {who}: {detail}")]
    Http {
        /// Which ztunnel.
        who: String,
        /// What failed.
        detail: String,
    },
    /// The admin API answered with an error status.
    #[error("admin API of {who} answered {status}: {body}")]
    Status {
        /// Which ztunnel.
        who: String,
        /// HTTP status.
        status: u16,
        /// Body of the answer.
        body: String,
    },
    /// The dump is not what a ztunnel of this mesh serves.
    #[error("config dump of {who} is unusable: {detail}")]
    Parse {
        /// Which ztunnel.
        who: String,
        /// What is wrong.
        detail: String,
    },
    /// No ztunnel pod on the node.
    #[error(
        "no ztunnel pod (label app=ztunnel) on {node} in namespace {namespace}; nodes with a ztunnel: {known}"
    )]
    NoZtunnel {
        /// The node asked for.
        node: String,
        /// Namespace searched.
        namespace: String,
        /// Nodes that have one.
        known: String,
    },
    /// A Kubernetes API request failed.
    #[error("cannot {what}: {error}")]
    Api {
        /// What we tried.
        what: String,
        /// Why.
        error: Box<kube::Error>,
    },
    /// The port-forward could not be set up.
    #[error("cannot port-forward to {who}: {detail} (needs RBAC for pods/portforward)")]
    PortForward {
        /// Which ztunnel.
        who: String,
        /// Why.
        detail: String,
    },
    /// No connection to the cluster.
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

/// Where the ztunnels are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local cluster (`meshctl local up`) with this state directory.
    Local(PathBuf),
    /// One ztunnel in this named network namespace, whatever node is asked for.
    Netns(String),
    /// The cluster of the kubeconfig (optionally a context), ztunnels in `namespace`.
    Cluster {
        /// Kubeconfig context.
        context: Option<String>,
        /// Namespace of the ztunnel pods.
        namespace: String,
    },
}

/// Flags choosing where the ztunnels are (shared by `ztunnel config` and `explain`).
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Use the local cluster (`meshctl local up`); implied by --state, and the default when the
    /// default state directory holds a cluster and no --context is given.
    #[arg(long)]
    pub local: bool,
    /// State directory of the local cluster.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Reach the ztunnel running in this named network namespace (`ip netns list`).
    #[arg(long, conflicts_with_all = ["local", "state", "context"])]
    pub netns: Option<String>,
    /// Kubeconfig context (a cluster; default: the current context).
    #[arg(long, conflicts_with_all = ["local", "state"])]
    pub context: Option<String>,
    /// Namespace of the ztunnel pods in a cluster.
    #[arg(long, default_value = DEFAULT_ZTUNNEL_NAMESPACE)]
    pub ztunnel_namespace: String,
}

impl TargetArgs {
    /// The target the flags select; `default_state` is where a local cluster is looked for.
    pub fn target(&self, default_state: &Path) -> Target {
        if let Some(ns) = &self.netns {
            return Target::Netns(ns.clone());
        }
        if let Some(dir) = &self.state {
            return Target::Local(dir.clone());
        }
        if self.local || (self.context.is_none() && ClusterState::file(default_state).exists()) {
            return Target::Local(default_state.to_path_buf());
        }
        Target::Cluster {
            context: self.context.clone(),
            namespace: self.ztunnel_namespace.clone(),
        }
    }
}

/// Reads config dumps of the ztunnels of a [`Target`], each node once.
pub struct Ztunnels {
    target: Target,
    client: Option<kube::Client>,
    cache: HashMap<String, ConfigDump>,
}

impl Ztunnels {
    /// Reads from `target`.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            client: None,
            cache: HashMap::new(),
        }
    }

    /// Reads from a cluster through `client` (tests give a client of a fake API server).
    pub fn with_client(client: kube::Client, namespace: &str) -> Self {
        Self {
            target: Target::Cluster {
                context: None,
                namespace: namespace.to_owned(),
            },
            client: Some(client),
            cache: HashMap::new(),
        }
    }

    /// Where the dumps come from.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The dump of the ztunnel of `node` (some ztunnel with `None`), with the node it is on.
    pub async fn dump(
        &mut self,
        node: Option<&str>,
    ) -> Result<(String, &ConfigDump), ZtunnelError> {
        let (node, body, who) = match &self.target {
            Target::Netns(ns) => {
                // One ztunnel serves every node asked for: cache it under its netns.
                let node = ns.clone();
                if self.cache.contains_key(&node) {
                    return self.cached(node);
                }
                let body = fetch::get_in_netns(ns, "/config_dump").await?;
                (node, body, format!("the ztunnel in netns {ns}"))
            }
            Target::Local(dir) => {
                let node = match node {
                    Some(n) => n.to_owned(),
                    None => node_name(1),
                };
                if self.cache.contains_key(&node) {
                    return self.cached(node);
                }
                let netns = local_node_netns(dir, &node)?;
                let body = fetch::get_in_netns(&netns, "/config_dump").await?;
                (node.clone(), body, format!("ztunnel-{node}"))
            }
            Target::Cluster { context, namespace } => {
                if let Some(n) = node.filter(|n| self.cache.contains_key(*n)) {
                    return self.cached(n.to_owned());
                }
                let client = match &self.client {
                    Some(c) => c.clone(),
                    None => {
                        let c = client::connect(context.as_deref()).await?;
                        self.client = Some(c.clone());
                        c
                    }
                };
                let (node, body) =
                    fetch::get_in_cluster(&client, namespace, node, "/config_dump").await?;
                let who = format!("the ztunnel of node {node}");
                (node, body, who)
            }
        };
        let dump = ConfigDump::parse(&body, &who)?;
        self.cache.insert(node.clone(), dump);
        self.cached(node)
    }

    fn cached(&self, node: String) -> Result<(String, &ConfigDump), ZtunnelError> {
        match self.cache.get(&node) {
            Some(d) => Ok((node, d)),
            None => Err(ZtunnelError::Http {
                who: node,
                detail: "config dump vanished from the cache".to_owned(),
            }),
        }
    }
}

/// The netns of node `node` (`node-N`) of the local cluster in `dir`.
pub fn local_node_netns(dir: &Path, node: &str) -> Result<String, ZtunnelError> {
    let state = ClusterState::load(dir)?
        .ok_or_else(|| ZtunnelError::NoLocalCluster(dir.display().to_string()))?;
    let n = (1..=state.nodes).find(|n| node_name(*n) == node);
    match n {
        Some(n) => Ok(node_netns(&state.id, n)),
        None => Err(ZtunnelError::UnknownNode {
            node: node.to_owned(),
            known: (1..=state.nodes)
                .map(node_name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `meshctl ztunnel` verbs.
#[derive(Debug, Subcommand)]
pub enum ZtunnelCommand {
    /// Shows the config a node's ztunnel runs (from its admin API's /config_dump).
    Config(ConfigArgs),
}

/// `meshctl ztunnel config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The node whose ztunnel to read (`node-1` in local mode).
    pub node: String,
    /// Which part to show.
    #[arg(value_enum, default_value_t = Section::All)]
    pub section: Section,
    /// `json` for the raw JSON of the section.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    pub output: Option<String>,
    /// Where the ztunnels are.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `meshctl ztunnel ...` and prints the result.
pub fn run(cmd: ZtunnelCommand) -> anyhow::Result<()> {
    let ZtunnelCommand::Config(args) = cmd;
    let rt = client::runtime()?;
    let out = rt.block_on(async {
        let mut z = Ztunnels::new(args.target.target(Path::new(DEFAULT_STATE_DIR)));
        let (_, dump) = z.dump(Some(&args.node)).await?;
        Ok::<_, ZtunnelError>(match args.output {
            Some(_) => dump.json(args.section),
            None => dump.table(args.section),
        })
    })?;
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_the_flags_and_the_local_state() {
        let dir = tempfile::tempdir().unwrap();
        let none = dir.path().join("absent");
        let args = TargetArgs {
            ztunnel_namespace: "istio-system".into(),
            ..TargetArgs::default()
        };
        assert!(matches!(args.target(&none), Target::Cluster { .. }));
        ClusterState::default().save(dir.path()).unwrap();
        assert_eq!(args.target(dir.path()), Target::Local(dir.path().into()));
        let ctx = TargetArgs {
            context: Some("prod".into()),
            ..args.clone()
        };
        assert!(matches!(
            ctx.target(dir.path()),
            Target::Cluster {
                context: Some(_),
                ..
            }
        ));
        let ns = TargetArgs {
            netns: Some("n1".into()),
            ..args
        };
        assert_eq!(ns.target(dir.path()), Target::Netns("n1".into()));
    }

    #[test]
    fn the_command_lines_parse() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["meshctl"], args].concat());
        let cli = parse(&[
            "ztunnel", "config", "node-2", "services", "-o", "json", "--state", "/tmp/s",
        ])
        .unwrap();
        let Command::Ztunnel(ZtunnelCommand::Config(a)) = cli.command else {
            panic!("not ztunnel config")
        };
        assert_eq!((a.node.as_str(), a.section), ("node-2", Section::Services));
        assert_eq!(a.output.as_deref(), Some("json"));
        assert_eq!(
            a.target.target(Path::new("/nonexistent")),
            Target::Local("/tmp/s".into())
        );
        let cli = parse(&["ztunnel", "config", "node-1", "--context", "kind"]).unwrap();
        let Command::Ztunnel(ZtunnelCommand::Config(a)) = cli.command else {
            panic!("not ztunnel config")
        };
        assert_eq!(a.section, Section::All);
        assert_eq!(
            a.target.target(Path::new("/nonexistent")),
            Target::Cluster {
                context: Some("kind".into()),
                namespace: DEFAULT_ZTUNNEL_NAMESPACE.into()
            }
        );
        assert!(parse(&["ztunnel", "config", "node-1", "routes"]).is_err());
        assert!(
            parse(&[
                "ztunnel",
                "config",
                "node-1",
                "--netns",
                "n",
                "--context",
                "c"
            ])
            .is_err()
        );
        assert!(parse(&["ztunnel", "config", "node-1", "-o", "yaml"]).is_err());
    }

    #[test]
    fn local_nodes_map_to_their_netns_and_unknown_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = local_node_netns(dir.path(), "node-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("meshctl local up"), "{e}");
        let s = ClusterState {
            id: "abcd0001".into(),
            nodes: 2,
            ..ClusterState::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(
            local_node_netns(dir.path(), "node-2").unwrap(),
            "meshctl-abcd0001-node-2"
        );
        let e = local_node_netns(dir.path(), "node-3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node-1, node-2"), "{e}");
    }
}
