//! The Kubernetes client of the cluster commands (`waypoint`, `ztunnel config`, `explain`): the
//! kubeconfig from the usual places (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service
//! account, as `kube::Config::infer` finds them), or a named context of the kubeconfig.

/// Errors of connecting to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No usable kubeconfig or in-cluster config.
    #[error(
        "cannot find a Kubernetes config: {0}; set KUBECONFIG, create ~/.kube/config or pass --context"
    )]
    Infer(Box<kube::config::InferConfigError>),
    /// The named context could not be loaded.
    #[error("cannot load context {context:?} from the kubeconfig: {error}")]
    Context {
        /// The context asked for.
        context: String,
        /// Why.
        error: Box<kube::config::KubeconfigError>,
    },
    /// The config is there but no client could be built from it (TLS, proxy...).
    #[error("cannot build a Kubernetes client from the config: {0}")]
    Build(Box<kube::Error>),
}

/// A client for `context` of the kubeconfig, or for the inferred config without one.
pub async fn connect(context: Option<&str>) -> Result<kube::Client, ClientError> {
    let config = match context {
        Some(c) => {
            let opts = kube::config::KubeConfigOptions {
                context: Some(c.to_owned()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&opts)
                .await
                .map_err(|source| ClientError::Context {
                    context: c.to_owned(),
                    error: Box::new(source),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClientError::Infer(Box::new(e)))?,
    };
    kube::Client::try_from(config).map_err(|e| ClientError::Build(Box::new(e)))
}

/// A small runtime for one command (the commands do a handful of requests).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
