//! A runner for the Gateway API mesh conformance cases (`tests/conformance/`, a copy of
//! `shared/conformance`: `cases.json` + the upstream route manifests) against the network-namespace
//! harness: the pods and services of `manifests/base-mesh.yaml`, every service bound to a real
//! waypoint, requests sent with curl from inside the client pod through its real ztunnel.
//!
//! Each test applies its manifests (the waypoint's routes directory), runs its cases until three
//! attempts in a row pass (at most 30 s, as upstream), runs the weight distribution check where
//! one is given, then deletes its manifests. Besides what upstream enforces in mesh mode, the
//! declared expectations (backend path, namespace, redirect `Location`) are checked too.

mod check;
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use check::{check_case, check_weights};
pub use topology::{ConformanceMesh, MESH_NS};

use super::L7Error;

/// How long a case may take to pass three times in a row (upstream `MaxTimeToConsistency`).
pub const MAX_TIME_TO_CONSISTENCY: Duration = Duration::from_secs(30);
/// Consecutive passes a case needs (upstream `RequiredConsecutiveSuccesses`).
pub const REQUIRED_CONSECUTIVE: usize = 3;

/// `from` of a case: where the client pod is.
#[derive(Debug, Clone, Deserialize)]
pub struct From {
    /// Namespace.
    pub namespace: String,
    /// Label selector (always `app=echo,version=v1`).
    pub selector: String,
}

/// The request of a case.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseRequest {
    /// `http` or `grpc`.
    pub protocol: String,
    /// Host to connect to (a service name, `name.namespace`, or `$POD_IP(selector)`).
    pub host: String,
    /// Port (default 80 for http).
    #[serde(default)]
    pub port: Option<u16>,
    /// Method (absent for gRPC).
    #[serde(default)]
    pub method: Option<String>,
    /// Request target, raw.
    #[serde(default)]
    pub path: String,
    /// Headers to send (`Host` overrides the authority).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Expected `Location` parts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Redirect {
    /// Scheme.
    pub scheme: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Path.
    pub path: Option<String>,
    /// Port, when it must be present.
    pub port: Option<u16>,
}

/// What a case expects.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Expect {
    /// Status (200 when absent).
    pub status: Option<u16>,
    /// Prefix of the answering pod's name.
    pub backend: Option<String>,
    /// Namespace of the answering pod (declared only upstream).
    pub namespace: Option<String>,
    /// Path the backend must see (declared only upstream).
    pub backend_path: Option<String>,
    /// Request headers the backend must see (values joined with `,`).
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    /// Request headers the backend must not see.
    #[serde(default)]
    pub request_headers_absent: Vec<String>,
    /// Response headers the client must see.
    #[serde(default)]
    pub response_headers: BTreeMap<String, String>,
    /// Response headers the client must not see.
    #[serde(default)]
    pub response_headers_absent: Vec<String>,
    /// Redirect target (declared only upstream).
    pub redirect: Option<Redirect>,
}

/// A weight distribution check.
#[derive(Debug, Clone, Deserialize)]
pub struct Weights {
    /// Backend -> expected share.
    pub expected: BTreeMap<String, f64>,
    /// Allowed absolute deviation.
    pub tolerance: f64,
    /// Requests per attempt.
    pub requests_per_attempt: usize,
    /// Attempts before failing.
    pub max_attempts: usize,
}

/// One case of `cases.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Upstream ShortName.
    pub test: String,
    /// Index within the test.
    pub index: usize,
    /// Upstream subtest name.
    pub name: String,
    /// Manifests applied for the test (relative to the conformance directory).
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Client pod.
    pub from: From,
    /// Request.
    pub request: CaseRequest,
    /// Expectations.
    #[serde(default)]
    pub expect: Expect,
    /// Weight check.
    #[serde(default)]
    pub weights: Option<Weights>,
}

/// Outcome of one test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    /// ShortName.
    pub test: String,
    /// Failures (empty = passed), one line each.
    pub failures: Vec<String>,
    /// How long it took.
    pub took: Duration,
}

/// The conformance directory of the repository.
pub fn conformance_dir() -> PathBuf {
    crate::bins::workspace_root()
        .join("tests")
        .join("conformance")
}

/// Reads `cases.json` of `dir`.
pub fn load_cases(dir: &Path) -> Result<Vec<Case>, L7Error> {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path).map_err(|e| L7Error::Io(path.clone(), e))?;
    serde_json::from_str(&text).map_err(|e| L7Error::Start {
        what: path.display().to_string(),
        detail: e.to_string(),
    })
}

/// The tests of `cases`, in order, each with its cases.
pub fn group(cases: &[Case]) -> Vec<(String, Vec<Case>)> {
    let mut out: Vec<(String, Vec<Case>)> = Vec::new();
    for c in cases {
        match out.last_mut() {
            Some((t, list)) if *t == c.test => list.push(c.clone()),
            _ => out.push((c.test.clone(), vec![c.clone()])),
        }
    }
    out
}

impl ConformanceMesh {
    /// Runs one test: manifests applied, every case to consistency, weights, manifests deleted.
    pub fn run_test(&self, dir: &Path, test: &str, cases: &[Case]) -> TestOutcome {
        let start = Instant::now();
        let mut failures = Vec::new();
        let manifests = cases
            .first()
            .map(|c| c.manifests.clone())
            .unwrap_or_default();
        if let Err(e) = self.apply(dir, &manifests) {
            failures.push(format!("applying {manifests:?}: {e}"));
        }
        for case in cases {
            if let Err(e) = self.run_case(case) {
                failures.push(format!("case {} ({}): {e}", case.index, case.name));
                continue;
            }
            if let Some(w) = &case.weights
                && let Err(e) = self.run_weights(case, w)
            {
                failures.push(format!("case {} weights: {e}", case.index));
            }
        }
        if let Err(e) = self.apply(dir, &[]) {
            failures.push(format!("deleting the manifests: {e}"));
        }
        TestOutcome {
            test: test.to_owned(),
            failures,
            took: start.elapsed(),
        }
    }

    fn run_case(&self, case: &Case) -> Result<(), String> {
        let start = Instant::now();
        let mut streak = 0;
        let mut last = String::new();
        while start.elapsed() < MAX_TIME_TO_CONSISTENCY {
            let outcome = self
                .send(case, 1)
                .map_err(|e| e.to_string())
                .and_then(|mut r| check_case(case, &r.remove(0)));
            match outcome {
                Ok(()) => {
                    streak += 1;
                    if streak >= REQUIRED_CONSECUTIVE {
                        return Ok(());
                    }
                }
                Err(e) => {
                    streak = 0;
                    last = e;
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Err(format!(
            "not consistent within {MAX_TIME_TO_CONSISTENCY:?}; last failure: {last}"
        ))
    }

    fn run_weights(&self, case: &Case, w: &Weights) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..w.max_attempts {
            match self.send(case, w.requests_per_attempt) {
                Ok(answers) => match check_weights(w, &answers) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                },
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("{} attempts failed; last: {last}", w.max_attempts))
    }
}
