//! The `mesh-cni` executable's logic: a chained CNI plugin (spec 1.0.0, and 0.3.x/0.4.0/1.1.0
//! configs) that asks the node agent to enrol each new pod and passes `prevResult` through.
//!
//! [`run`] takes the environment and stdin and returns what to print and the exit code, so the
//! binary is a thin shell and tests drive the real logic. It never panics on bad input: every
//! failure becomes the spec's error JSON on stdout with a well-known code.

use std::time::Duration;

use crate::protocol::{self, CniPod, CniPodRef, CniReply, CniRequest, ProtocolError};

pub mod config;
pub mod env;
pub mod error;

pub use config::{NetConf, SUPPORTED_VERSIONS};
pub use env::{CniEnv, Command};
pub use error::{CniError, ErrorCode};

/// Longest wait for the agent on DEL: DEL must succeed whatever happens, so it only tries briefly.
pub const DEL_TIMEOUT: Duration = Duration::from_secs(2);
/// The newest version this plugin speaks (announced by VERSION).
pub const LATEST_VERSION: &str = "1.1.0";

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Text for stdout (a result, version info, error JSON, or nothing).
    pub stdout: String,
    /// Process exit code: 0 on success, 1 with error JSON on stdout.
    pub exit_code: i32,
}

/// Runs one invocation with the environment `get` and `stdin`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Output {
    match execute(get, stdin) {
        Ok(stdout) => Output {
            stdout,
            exit_code: 0,
        },
        Err(err) => {
            tracing::warn!(%err, "mesh-cni failed");
            Output {
                stdout: err.to_json(&config::reply_version(stdin)),
                exit_code: 1,
            }
        }
    }
}

fn execute(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<String, CniError> {
    let env = CniEnv::parse(get)?;
    if env.command == Command::Version {
        return Ok(version_info(stdin));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command {
        Command::Add => add(&env, &conf),
        Command::Del => {
            del(&env, &conf);
            Ok(String::new())
        }
        Command::Check => check(&env, &conf).map(|()| String::new()),
        Command::Status => status(&conf).map(|()| String::new()),
        Command::Version => Ok(version_info(stdin)),
    }
}

/// The VERSION answer.
pub fn version_info(stdin: &[u8]) -> String {
    let asked = config::reply_version(stdin);
    let version = if stdin.is_empty() {
        LATEST_VERSION.to_string()
    } else {
        asked
    };
    serde_json::json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

/// The pod named by CNI_ARGS, or None for a container that is not a Kubernetes pod.
fn pod_ref(env: &CniEnv) -> Option<CniPodRef> {
    let name = env.arg("K8S_POD_NAME").filter(|v| !v.is_empty())?;
    let namespace = env.arg("K8S_POD_NAMESPACE").filter(|v| !v.is_empty())?;
    Some(CniPodRef {
        uid: env.arg("K8S_POD_UID").unwrap_or_default().to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        container_id: env.container_id.clone(),
    })
}

fn prev_result(conf: &NetConf, command: Command) -> Result<&str, CniError> {
    conf.prev_result.as_deref().map(|r| r.get()).ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "prevResult missing",
            format!(
                "mesh-cni is a chained plugin: list it after the interface plugin (e.g. bridge) in the \
                 conflist so that {} gets the pod's interfaces and IPs in prevResult",
                command.name()
            ),
        )
    })
}

fn add(env: &CniEnv, conf: &NetConf) -> Result<String, CniError> {
    let prev = prev_result(conf, Command::Add)?.to_string();
    let Some(pod) = pod_ref(env) else {
        tracing::info!(container = %env.container_id, "not a Kubernetes pod (no K8S_POD_NAME/NAMESPACE): passed through");
        return Ok(prev);
    };
    let request = CniRequest::Add(CniPod {
        uid: pod.uid,
        name: pod.name,
        namespace: pod.namespace,
        container_id: pod.container_id,
        netns: env.netns.clone().unwrap_or_default(),
        ifname: env.ifname.clone(),
        ips: conf.pod_ips()?,
    });
    match protocol::call(&conf.agent_socket, &request, conf.timeout) {
        Ok(CniReply::Enrolled | CniReply::NotEnrolled) => Ok(prev),
        Ok(reply) => Err(reply_error("ADD", reply)),
        Err(err) => Err(transport_error("ADD", &err)),
    }
}

fn del(env: &CniEnv, conf: &NetConf) {
    let Some(pod) = pod_ref(env) else { return };
    let timeout = conf.timeout.min(DEL_TIMEOUT);
    match protocol::call(&conf.agent_socket, &CniRequest::Del(pod), timeout) {
        Ok(CniReply::Ok | CniReply::NotEnrolled | CniReply::Enrolled) => {}
        Ok(reply) => tracing::warn!(?reply, "agent failed DEL; the agent's self-check cleans up"),
        Err(err) => {
            tracing::warn!(%err, "agent not reached for DEL; the agent's self-check cleans up")
        }
    }
}

fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    if matches!(conf.cni_version.as_str(), "0.3.0" | "0.3.1") {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            "CHECK not supported by this config version",
            format!(
                "cniVersion {} has no CHECK (0.4.0 and later do)",
                conf.cni_version
            ),
        ));
    }
    prev_result(conf, Command::Check)?;
    let Some(pod) = pod_ref(env) else {
        return Ok(());
    };
    match protocol::call(&conf.agent_socket, &CniRequest::Check(pod), conf.timeout) {
        Ok(CniReply::Ok | CniReply::Enrolled | CniReply::NotEnrolled) => Ok(()),
        Ok(CniReply::Error { message, .. }) => Err(CniError::new(
            ErrorCode::CheckFailed,
            "pod capture is not as expected",
            message,
        )),
        Err(err) => Err(transport_error("CHECK", &err)),
    }
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    let not_available = |details: String| {
        CniError::new(
            ErrorCode::NotAvailable,
            "mesh node agent not available",
            details,
        )
    };
    match protocol::call(&conf.agent_socket, &CniRequest::Status, conf.timeout) {
        Ok(CniReply::Ok) => Ok(()),
        Ok(CniReply::Error { message, .. }) => Err(not_available(message)),
        Ok(other) => Err(not_available(format!("unexpected reply {other:?}"))),
        Err(err) => Err(not_available(err.to_string())),
    }
}

fn reply_error(op: &str, reply: CniReply) -> CniError {
    match reply {
        CniReply::Error {
            message,
            retry: true,
        } => CniError::new(
            ErrorCode::TryAgainLater,
            format!("{op}: mesh node agent not ready"),
            message,
        ),
        CniReply::Error { message, .. } => CniError::new(
            ErrorCode::IoFailure,
            format!("{op}: mesh node agent could not capture the pod"),
            message,
        ),
        other => CniError::new(
            ErrorCode::IoFailure,
            format!("{op}: unexpected reply from the mesh node agent"),
            format!("{other:?}"),
        ),
    }
}

fn transport_error(op: &str, err: &ProtocolError) -> CniError {
    let code = match err {
        ProtocolError::Connect { .. } => ErrorCode::TryAgainLater,
        e if e.is_timeout() => ErrorCode::TryAgainLater,
        _ => ErrorCode::IoFailure,
    };
    let why = if err.is_timeout() {
        "the mesh node agent did not answer in time; the pod must not start uncaptured"
    } else {
        "cannot reach the mesh node agent; the pod must not start uncaptured"
    };
    CniError::new(code, format!("{op}: {why}"), err.to_string())
}

#[cfg(test)]
mod tests;
