//! Request latency at a fixed rate with sockperf ping-pong (TCP, 1 KiB messages, round trip).

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};

use super::Settings;
use crate::env::BenchEnv;

/// Message size of the latency measure.
pub const MESSAGE_SIZE: u32 = 1024;

/// Runs `sockperf ping-pong` from the client pod; (p50, p99) round-trip time in microseconds.
pub fn latency(env: &BenchEnv, target: SocketAddr, s: &Settings) -> anyhow::Result<(f64, f64)> {
    let args = [
        "ping-pong".to_owned(),
        "--tcp".into(),
        "-i".into(),
        target.ip().to_string(),
        "-p".into(),
        target.port().to_string(),
        "-t".into(),
        s.duration.as_secs().to_string(),
        format!("--mps={}", s.rate),
        "-m".into(),
        MESSAGE_SIZE.to_string(),
        "--full-rtt".into(),
    ];
    let out = env
        .client
        .netns
        .run_timeout("sockperf", &args, s.client_timeout())?;
    if !out.success() {
        bail!(
            "sockperf to {target} exited with {}: {}{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    let p50 = percentile(&text, "50.000").context("sockperf printed no p50")?;
    let p99 = percentile(&text, "99.000").context("sockperf printed no p99")?;
    Ok((p50, p99))
}

/// Reads `---> percentile <which> = <usec>` from sockperf's output.
pub fn percentile(text: &str, which: &str) -> anyhow::Result<f64> {
    let needle = format!("percentile {which} =");
    let line = text
        .lines()
        .find(|l| l.contains(&needle))
        .ok_or_else(|| anyhow!("no line with {needle:?}"))?;
    let value = line.rsplit('=').next().unwrap_or_default().trim();
    value
        .parse()
        .with_context(|| format!("bad number in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "sockperf: Summary: Round trip is 18.845 usec
sockperf: ---> <MAX> observation =   54.690
sockperf: ---> percentile 99.999 =   54.690
sockperf: ---> percentile 99.000 =   36.183
sockperf: ---> percentile 90.000 =   27.490
sockperf: ---> percentile 50.000 =   16.123
sockperf: ---> <MIN> observation =   14.010";

    #[test]
    fn reads_percentiles() {
        assert_eq!(percentile(OUTPUT, "50.000").expect("p50"), 16.123);
        assert_eq!(percentile(OUTPUT, "99.000").expect("p99"), 36.183);
        assert!(percentile(OUTPUT, "75.000").is_err());
    }
}
