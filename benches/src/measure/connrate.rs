//! New connections per second, with the test app's connrate client.

use std::net::SocketAddr;

use anyhow::{Context, anyhow, bail};

use super::Settings;
use crate::TESTAPP_SUBCOMMAND;
use crate::env::BenchEnv;

/// Runs `testapp connrate` from the client pod; (completed connections per second, failed
/// connections).
pub fn rate(env: &BenchEnv, target: SocketAddr, s: &Settings) -> anyhow::Result<(f64, u64)> {
    let args = [
        TESTAPP_SUBCOMMAND.to_owned(),
        "connrate".into(),
        "--to".into(),
        target.to_string(),
        "--duration-ms".into(),
        s.duration.as_millis().to_string(),
        "--concurrency".into(),
        s.concurrency.to_string(),
    ];
    let out = env
        .client
        .netns
        .run_timeout(&s.testapp, &args, s.client_timeout())?;
    if !out.success() {
        bail!(
            "connrate to {target} exited with {}: {}",
            out.status,
            out.stderr
        );
    }
    let (per_second, errors) = parse(&out.stdout)?;
    if per_second == 0.0 {
        bail!("no connection to {target} completed ({errors} failed)");
    }
    Ok((per_second, errors))
}

/// Reads `per_second` and `errors` from the connrate JSON line.
pub fn parse(line: &str) -> anyhow::Result<(f64, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).context("connrate did not print JSON")?;
    let per_second = v["per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("no per_second in {line}"))?;
    let errors = v["errors"]
        .as_u64()
        .ok_or_else(|| anyhow!("no errors in {line}"))?;
    Ok((per_second, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_report_line() {
        let line = r#"{"connections":300,"errors":2,"seconds":3.0,"per_second":100.0}"#;
        assert_eq!(parse(line).expect("parses"), (100.0, 2));
        assert!(parse("garbage").is_err());
    }
}
