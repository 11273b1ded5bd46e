//! CNI errors: the well-known codes of the CNI spec and the error JSON written on stdout.

use serde::Serialize;

/// Well-known CNI error codes (CNI spec, "Error" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the config's `cniVersion` is not one this plugin speaks.
    IncompatibleVersion = 1,
    /// 2: a field of the network config is not supported.
    UnsupportedField = 2,
    /// 3: the container is unknown or does not exist.
    UnknownContainer = 3,
    /// 4: the CNI_* environment is missing or invalid.
    InvalidEnvironment = 4,
    /// 5: an I/O failure (e.g. the agent could not be reached).
    IoFailure = 5,
    /// 6: stdin could not be decoded.
    DecodingFailure = 6,
    /// 7: the network config is invalid.
    InvalidNetworkConfig = 7,
    /// 11: a transient condition; the runtime should retry later (CNI 1.0.0+).
    TryAgainLater = 11,
    /// 50: STATUS: the plugin cannot serve ADDs right now (CNI 1.1.0).
    NotAvailable = 50,
    /// 100 (plugin-specific range): CHECK found the pod's capture not as it should be.
    CheckFailed = 100,
}

/// A CNI error: code, message and details, rendered as the spec's error JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}: {details}")]
pub struct CniError {
    /// The code.
    pub code: ErrorCode,
    /// Short message.
    pub msg: String,
    /// Longer description for the operator.
    pub details: String,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: &'a str,
    details: &'a str,
}

impl CniError {
    /// A new error.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The numeric code as sent for `version`: code 11 only exists from CNI 1.0.0 on, older
    /// runtimes get the generic I/O failure instead.
    pub fn code_for(&self, version: &str) -> u32 {
        let legacy = matches!(version, "0.3.0" | "0.3.1" | "0.4.0");
        match self.code {
            ErrorCode::TryAgainLater if legacy => ErrorCode::IoFailure as u32,
            code => code as u32,
        }
    }

    /// The error JSON written on stdout, for a config of `version`.
    pub fn to_json(&self, version: &str) -> String {
        let json = ErrorJson {
            cni_version: version,
            code: self.code_for(version),
            msg: &self.msg,
            details: &self.details,
        };
        // Serializing plain strings and a number cannot fail; keep a valid fallback anyway.
        serde_json::to_string(&json).unwrap_or_else(|_| {
            format!(
                "{{\"cniVersion\":\"{version}\",\"code\":{},\"msg\":\"error\"}}",
                self.code_for(version)
            )
        })
    }
}
