//! `meshctl waypoint apply|list|delete` (like `istioctl waypoint`): waypoints are Gateways of
//! class `istio-waypoint` with the HBONE listener of DESIGN.md 5; control deploys them.
//!
//! - `apply` validates the name, checks the namespace exists, server-side-applies the Gateway
//!   (field manager `meshctl`, forced) and, with `--enroll-namespace`, labels the namespace
//!   `istio.io/use-waypoint=<name>`.
//! - `list` shows the waypoints of a namespace (or all) with their `istio.io/waypoint-for` and
//!   `Programmed` condition.
//! - `--local [--state DIR]` runs the same verbs on a local cluster's store ([`local`]).
//! - `delete` removes a waypoint (refusing Gateways of other classes) and the namespace's
//!   `istio.io/use-waypoint` label when it names that waypoint.

pub mod client;
mod gateway;
pub mod local;

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

pub use gateway::{
    FIELD_MANAGER, USE_WAYPOINT_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL, WaypointFor,
    WaypointInfo, gateway_manifest, gateways_api, render_table,
};

/// Default waypoint name (Istio's).
pub const DEFAULT_NAME: &str = "waypoint";

/// Errors of the waypoint commands. Bad input changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum WaypointError {
    /// The name is not a DNS label.
    #[error("invalid waypoint name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The namespace does not exist.
    #[error("namespace {0:?} does not exist; create it first (kubectl create namespace {0})")]
    NoNamespace(String),
    /// `delete` of a waypoint that is not there.
    #[error("no waypoint {0}/{1}; `meshctl waypoint list -n {0}` shows the waypoints")]
    NotFound(String, String),
    /// `delete` of a Gateway that is not a waypoint.
    #[error(
        "Gateway {namespace}/{name} has class {class:?}, not {WAYPOINT_CLASS:?}: it is not a waypoint, not deleting it"
    )]
    NotAWaypoint {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Its class.
        class: String,
    },
    /// A request to the API server failed.
    #[error("cannot {what}: {error}")]
    Api {
        /// What we tried.
        what: String,
        /// The failure.
        error: Box<kube::Error>,
    },
    /// No connection to the cluster.
    #[error(transparent)]
    Client(#[from] client::ClientError),
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> WaypointError {
    let what = what.into();
    move |source| WaypointError::Api {
        what,
        error: Box::new(source),
    }
}

/// `meshctl waypoint` verbs.
#[derive(Debug, Subcommand)]
pub enum WaypointCommand {
    /// Creates or updates a waypoint (server-side apply of an istio-waypoint Gateway).
    Apply(ApplyArgs),
    /// Lists the waypoints with their traffic type and Programmed status.
    List(ListArgs),
    /// Deletes a waypoint (and the namespace's use-waypoint label when it points at it).
    Delete(DeleteArgs),
}

/// Flags shared by the cluster commands.
#[derive(Debug, Clone, Default, Args)]
pub struct KubeArgs {
    /// Kubeconfig context to use (default: the current context, or the in-cluster config).
    #[arg(long)]
    pub context: Option<String>,
}

/// `meshctl waypoint apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Namespace of the waypoint (default: the kubeconfig's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Name of the waypoint Gateway.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Traffic the waypoint handles (label istio.io/waypoint-for).
    #[arg(long = "for", value_enum, default_value_t = WaypointFor::Service)]
    pub for_: WaypointFor,
    /// Also label the namespace istio.io/use-waypoint=<name>.
    #[arg(long)]
    pub enroll_namespace: bool,
    /// Cluster selection.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// A local cluster instead (`--local`, `--state DIR`).
    #[command(flatten)]
    pub local: local::LocalArgs,
}

/// `meshctl waypoint list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Namespace to list (default: the kubeconfig's namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// List the waypoints of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// `json` for the Gateway objects as JSON.
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    pub output: Option<String>,
    /// Cluster selection.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// A local cluster instead (`--local`, `--state DIR`).
    #[command(flatten)]
    pub local: local::LocalArgs,
}

/// `meshctl waypoint delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Namespace of the waypoint (default: the kubeconfig's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Name of the waypoint Gateway.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,
    /// Cluster selection.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// A local cluster instead (`--local`, `--state DIR`).
    #[command(flatten)]
    pub local: local::LocalArgs,
}

/// Runs a `meshctl waypoint` verb against the cluster of the kubeconfig and prints the result.
pub fn run(cmd: WaypointCommand) -> anyhow::Result<()> {
    let local = match &cmd {
        WaypointCommand::Apply(a) => a.local.dir(),
        WaypointCommand::List(a) => a.local.dir(),
        WaypointCommand::Delete(a) => a.local.dir(),
    };
    if let Some(dir) = local {
        print!("{}", local::run(&cmd, &dir)?);
        return Ok(());
    }
    let rt = client::runtime()?;
    let out = rt.block_on(async move {
        let context = match &cmd {
            WaypointCommand::Apply(a) => a.kube.context.clone(),
            WaypointCommand::List(a) => a.kube.context.clone(),
            WaypointCommand::Delete(a) => a.kube.context.clone(),
        };
        let client = client::connect(context.as_deref()).await?;
        let ns = |n: &Option<String>| {
            n.clone()
                .unwrap_or_else(|| client.default_namespace().to_owned())
        };
        match &cmd {
            WaypointCommand::Apply(a) => {
                apply(
                    &client,
                    &ns(&a.namespace),
                    &a.name,
                    a.for_,
                    a.enroll_namespace,
                )
                .await
            }
            WaypointCommand::List(a) => {
                let scope = (!a.all_namespaces).then(|| ns(&a.namespace));
                let found = list(&client, scope.as_deref()).await?;
                Ok(match a.output.as_deref() {
                    Some(_) => gateway::render_json(&found),
                    None => render_table(&found, a.all_namespaces),
                })
            }
            WaypointCommand::Delete(a) => delete(&client, &ns(&a.namespace), &a.name).await,
        }
    })?;
    print!("{out}");
    Ok(())
}

/// Applies waypoint `namespace/name` for traffic `for_`; with `enroll`, labels the namespace to
/// use it. Returns what was done, one line per change.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    for_: WaypointFor,
    enroll: bool,
) -> Result<String, WaypointError> {
    gateway::validate_name(name)?;
    gateway::validate_name(namespace)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces
        .get_opt(namespace)
        .await
        .map_err(api_err(format!("read namespace {namespace}")))?
        .is_none()
    {
        return Err(WaypointError::NoNamespace(namespace.to_owned()));
    }
    let gateways = gateways_api(client, Some(namespace));
    let params = PatchParams::apply(FIELD_MANAGER).force();
    gateways
        .patch(
            name,
            &params,
            &Patch::Apply(gateway_manifest(namespace, name, for_)),
        )
        .await
        .map_err(api_err(format!(
            "apply waypoint Gateway {namespace}/{name}"
        )))?;
    let mut out = format!("waypoint {namespace}/{name} applied (for {for_})\n");
    if enroll {
        let patch = serde_json::json!({"metadata": {"labels": {USE_WAYPOINT_LABEL: name}}});
        namespaces
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("label namespace {namespace}")))?;
        out.push_str(&format!(
            "namespace {namespace} labelled {USE_WAYPOINT_LABEL}={name}\n"
        ));
    }
    Ok(out)
}

/// The waypoints of `namespace` (of every namespace with `None`), sorted by namespace and name.
pub async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<WaypointInfo>, WaypointError> {
    let gateways = gateways_api(client, namespace);
    let what = match namespace {
        Some(ns) => format!("list Gateways of namespace {ns}"),
        None => "list Gateways".to_owned(),
    };
    let list = gateways
        .list(&ListParams::default())
        .await
        .map_err(api_err(what))?;
    let mut found: Vec<WaypointInfo> = list
        .items
        .iter()
        .filter_map(WaypointInfo::from_gateway)
        .collect();
    found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(found)
}

/// Deletes waypoint `namespace/name` and the namespace's `istio.io/use-waypoint` label if it
/// names it. Returns what was done.
pub async fn delete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, WaypointError> {
    gateway::validate_name(name)?;
    gateway::validate_name(namespace)?;
    let gateways = gateways_api(client, Some(namespace));
    let Some(gw) = gateways
        .get_opt(name)
        .await
        .map_err(api_err(format!("read Gateway {namespace}/{name}")))?
    else {
        return Err(WaypointError::NotFound(
            namespace.to_owned(),
            name.to_owned(),
        ));
    };
    let class = gateway::class_of(&gw);
    if class != WAYPOINT_CLASS {
        return Err(WaypointError::NotAWaypoint {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            class: class.to_owned(),
        });
    }
    gateways
        .delete(name, &DeleteParams::default())
        .await
        .map_err(api_err(format!("delete Gateway {namespace}/{name}")))?;
    let mut out = format!("waypoint {namespace}/{name} deleted\n");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .get_opt(namespace)
        .await
        .map_err(api_err(format!("read namespace {namespace}")))?;
    let uses_it = ns
        .and_then(|n| n.metadata.labels)
        .and_then(|l| l.get(USE_WAYPOINT_LABEL).cloned())
        .is_some_and(|v| v == name);
    if uses_it {
        let patch = serde_json::json!({"metadata": {"labels": {USE_WAYPOINT_LABEL: null}}});
        namespaces
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("unlabel namespace {namespace}")))?;
        out.push_str(&format!(
            "namespace {namespace}: label {USE_WAYPOINT_LABEL} removed\n"
        ));
    }
    Ok(out)
}
