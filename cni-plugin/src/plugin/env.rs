//! The CNI_* environment, validated per command.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{CniError, ErrorCode};

/// The CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Add the container to the network.
    Add,
    /// Remove it.
    Del,
    /// Verify it is as ADD left it.
    Check,
    /// Is the plugin ready for ADDs (CNI 1.1.0)?
    Status,
    /// Report the supported versions.
    Version,
}

impl Command {
    /// The `CNI_COMMAND` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION/STATUS).
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs.
    pub args: BTreeMap<String, String>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(
        ErrorCode::InvalidEnvironment,
        "invalid CNI environment",
        msg,
    )
}

impl CniEnv {
    /// Reads and validates the environment from `get` (e.g. `std::env::var`).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let nonempty = |key: &str| get(key).filter(|v| !v.is_empty());
        let command = match nonempty("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some(other) => return Err(invalid(format!("unknown CNI_COMMAND {other:?}"))),
            None => return Err(invalid("CNI_COMMAND is not set".into())),
        };
        let needs_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let require = |key: &str| {
            nonempty(key).ok_or_else(|| {
                invalid(format!(
                    "{key} is required for CNI_COMMAND={}",
                    command.name()
                ))
            })
        };
        let (container_id, ifname) = if needs_container {
            (require("CNI_CONTAINERID")?, require("CNI_IFNAME")?)
        } else {
            (String::new(), String::new())
        };
        let netns = match command {
            Command::Add | Command::Check => Some(PathBuf::from(require("CNI_NETNS")?)),
            _ => nonempty("CNI_NETNS").map(PathBuf::from),
        };
        let args = parse_args(&get("CNI_ARGS").unwrap_or_default())?;
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// A `CNI_ARGS` value.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.get(key).map(String::as_str)
    }
}

/// Parses `K1=V1;K2=V2` (empty segments are ignored, a segment without `=` is an error).
pub fn parse_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for part in text.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("CNI_ARGS entry {part:?} is not KEY=VALUE")))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}
