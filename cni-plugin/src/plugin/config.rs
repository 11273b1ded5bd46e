//! The network configuration on stdin (one plugin entry of a conflist, with `prevResult`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{CniError, ErrorCode};

/// The config versions this plugin accepts (1.1.0 is the one that has STATUS).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version used in replies when the config's own cannot be read.
pub const FALLBACK_VERSION: &str = "1.0.0";
/// Where the node agent listens by default (the installer writes the real path into the config).
pub const DEFAULT_AGENT_SOCKET: &str = "/var/run/mesh-cni/cni.sock";
/// How long ADD waits for the agent by default: enrolment is a few tool runs plus ztunnel's
/// Ack (milliseconds), the margin covers a loaded node; past it the pod start fails and the
/// runtime retries, so a pod never starts uncaptured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    agent_socket: Option<PathBuf>,
    timeout_ms: Option<u64>,
    prev_result: Option<Box<RawValue>>,
}

/// The validated network config.
#[derive(Debug)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (`mesh-cni`).
    pub plugin_type: String,
    /// The agent's socket (`agentSocket`).
    pub agent_socket: PathBuf,
    /// How long to wait for the agent (`timeoutMs`).
    pub timeout: Duration,
    /// The previous plugin's result, byte for byte.
    pub prev_result: Option<Box<RawValue>>,
}

/// The version a reply should carry for `stdin`, even when the config is otherwise invalid.
pub fn reply_version(stdin: &[u8]) -> String {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "cniVersion")]
        v: Option<String>,
    }
    serde_json::from_slice::<V>(stdin)
        .ok()
        .and_then(|v| v.v)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| FALLBACK_VERSION.to_string())
}

impl NetConf {
    /// Parses and validates stdin.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: RawConf = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::DecodingFailure,
                "cannot decode the network configuration",
                format!("stdin is not a valid CNI network config JSON object: {e}"),
            )
        })?;
        let invalid = |details: String| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "invalid network configuration",
                details,
            )
        };
        let cni_version = raw
            .cni_version
            .ok_or_else(|| invalid("cniVersion is missing".into()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                "incompatible CNI version",
                format!(
                    "cniVersion {cni_version:?} is not supported; mesh-cni supports {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("name is missing".into()))?;
        let plugin_type = raw
            .plugin_type
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("type is missing".into()))?;
        let timeout = match raw.timeout_ms {
            Some(0) => return Err(invalid("timeoutMs must be greater than 0".into())),
            Some(ms) => Duration::from_millis(ms),
            None => DEFAULT_TIMEOUT,
        };
        Ok(Self {
            cni_version,
            name,
            plugin_type,
            agent_socket: raw
                .agent_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT_SOCKET)),
            timeout,
            prev_result: raw.prev_result,
        })
    }

    /// The container's IPs listed in `prevResult` (those on an interface inside the sandbox
    /// when interfaces are listed).
    pub fn pod_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let Some(prev) = &self.prev_result else {
            return Ok(Vec::new());
        };
        pod_ips(prev.get())
    }
}

#[derive(Deserialize)]
struct PrevResult {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    interface: Option<usize>,
}

/// The sandbox IPs of a CNI result (any of versions 0.3.0 to 1.1.0).
pub fn pod_ips(result: &str) -> Result<Vec<IpAddr>, CniError> {
    let invalid = |details: String| {
        CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "invalid prevResult",
            details,
        )
    };
    let prev: PrevResult = serde_json::from_str(result)
        .map_err(|e| invalid(format!("prevResult is not a CNI result: {e}")))?;
    let mut ips = Vec::new();
    for ip in &prev.ips {
        let in_sandbox = match ip.interface {
            Some(i) => prev
                .interfaces
                .get(i)
                .is_none_or(|iface| !iface.sandbox.is_empty()),
            None => true,
        };
        if !in_sandbox {
            continue;
        }
        let addr = ip.address.split('/').next().unwrap_or_default();
        let parsed: IpAddr = addr
            .parse()
            .map_err(|e| invalid(format!("prevResult address {:?}: {e}", ip.address)))?;
        ips.push(parsed);
    }
    Ok(ips)
}
