//! TCP throughput with iperf3.

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};

use super::Settings;
use crate::env::BenchEnv;

/// Runs `iperf3 -c` from the client pod with `streams` parallel streams; bits per second
/// received by the server.
pub fn throughput(
    env: &BenchEnv,
    target: SocketAddr,
    streams: u32,
    s: &Settings,
) -> anyhow::Result<f64> {
    let args = [
        "-c".to_owned(),
        target.ip().to_string(),
        "-p".into(),
        target.port().to_string(),
        "-t".into(),
        s.duration.as_secs().to_string(),
        "-P".into(),
        streams.to_string(),
        "-J".into(),
    ];
    let out = env
        .client
        .netns
        .run_timeout("iperf3", &args, s.client_timeout())?;
    let bps = parse(&out.stdout)
        .with_context(|| format!("iperf3 to {target} failed; stderr: {}", out.stderr))?;
    if !out.success() {
        bail!("iperf3 exited with {}: {}", out.status, out.stderr);
    }
    Ok(bps)
}

/// Extracts `end.sum_received.bits_per_second` from iperf3's JSON output.
pub fn parse(json: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 did not print JSON")?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received.bits_per_second"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_received_rate() {
        let json = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":2.0e10},
            "sum_received":{"bits_per_second":1.8457745843e10}}}"#;
        assert_eq!(parse(json).expect("parses"), 1.8457745843e10);
    }

    #[test]
    fn reports_iperf_errors() {
        let err = parse(
            r#"{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}"#,
        )
        .expect_err("error");
        assert!(err.to_string().contains("Connection refused"), "{err}");
        assert!(parse("not json").is_err());
    }
}
