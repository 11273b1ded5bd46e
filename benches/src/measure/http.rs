//! HTTP request latency at a fixed rate (`mesh-benches http load` in the client pod against
//! `mesh-benches http echo` in the server pod), and the CPU time the variant's proxies used
//! meanwhile.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::bail;

use super::Settings;
use crate::env::BenchEnv;
use crate::http::HTTP_SUBCOMMAND;
use crate::http::load::Report;

/// Request body size of the HTTP measure (the target is given for 1 KiB bodies).
pub const BODY_SIZE: usize = 1024;

/// What the HTTP measure found.
#[derive(Debug, Clone)]
pub struct HttpFigures {
    /// Latency report of the load client.
    pub report: Report,
    /// CPU used by each watched process during the run, in cores (CPU seconds per second).
    pub cpu: Vec<(String, f64)>,
}

/// Runs the load client from the client pod to `target` at `s.http_rate` requests per second,
/// reading the CPU time of `watched` (label, pid) before and after. The window is the client's
/// whole run (its start and warm-up included, a few ms), so the CPU figure errs low by that much.
pub fn latency(
    env: &BenchEnv,
    target: SocketAddr,
    s: &Settings,
    watched: &[(String, u32)],
) -> anyhow::Result<HttpFigures> {
    let args = [
        HTTP_SUBCOMMAND.to_owned(),
        "load".into(),
        "--to".into(),
        target.to_string(),
        "--rate".into(),
        s.http_rate.to_string(),
        "--seconds".into(),
        s.duration.as_secs_f64().to_string(),
        "--body".into(),
        BODY_SIZE.to_string(),
        "--connections".into(),
        s.http_connections.to_string(),
    ];
    let before = watched
        .iter()
        .map(|(_, pid)| crate::cpu::used(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let out = env
        .client
        .netns
        .run_timeout(&s.testapp, &args, s.client_timeout())?;
    let wall = start.elapsed().as_secs_f64();
    if !out.success() {
        bail!(
            "HTTP load to {target} exited with {}: {}",
            out.status,
            out.stderr
        );
    }
    let report = Report::from_json(&out.stdout)?;
    if report.ok == 0 {
        bail!(
            "no HTTP request to {target} succeeded ({} failed)",
            report.errors
        );
    }
    let mut cpu = Vec::new();
    for ((label, pid), b) in watched.iter().zip(before) {
        let used = crate::cpu::used(*pid)?.saturating_sub(b);
        cpu.push((label.clone(), used.as_secs_f64() / wall));
    }
    Ok(HttpFigures { report, cpu })
}
