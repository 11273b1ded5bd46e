//! The fixed-rate HTTP/1.1 load client (`mesh-benches http load`), in the spirit of wrk2 (which
//! Debian does not ship): requests are scheduled at a constant rate, spread over `connections`
//! kept-alive connections (one thread each), and each latency is measured from the request's
//! *scheduled* send time to the end of its response, so a stall delays and counts every request
//! behind it (no coordinated omission). Every connection is opened and warmed up with one request
//! before the clock starts, so connection and tunnel setup are not part of the figures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::wire::{self, Conn};

/// Options of `mesh-benches http load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// Address to send to (ip:port).
    #[arg(long)]
    pub to: SocketAddr,
    /// `Host` header (default: the address).
    #[arg(long)]
    pub host: Option<String>,
    /// Request path.
    #[arg(long, default_value = "/bench")]
    pub path: String,
    /// Requests per second, over all connections.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Measured duration, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Request body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body: usize,
    /// Kept-alive connections (each one carries every `connections`-th request).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
}

/// What a load run measured (microseconds for latencies).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests that failed or got another status.
    pub errors: u64,
    /// The measured duration (seconds).
    pub seconds: f64,
    /// Median latency.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest latency.
    pub max_us: f64,
}

impl Report {
    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "ok": self.ok, "errors": self.errors, "seconds": self.seconds,
            "p50_us": self.p50_us, "p90_us": self.p90_us, "p99_us": self.p99_us,
            "max_us": self.max_us,
        })
        .to_string()
    }

    /// Parses [`Report::to_json`]'s line.
    pub fn from_json(line: &str) -> anyhow::Result<Report> {
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).context("the load client did not print JSON")?;
        let f = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("no number {k:?} in {line}"))
        };
        Ok(Report {
            ok: f("ok")? as u64,
            errors: f("errors")? as u64,
            seconds: f("seconds")?,
            p50_us: f("p50_us")?,
            p90_us: f("p90_us")?,
            p99_us: f("p99_us")?,
            max_us: f("max_us")?,
        })
    }
}

/// Runs the load and computes the report.
pub fn run(opts: &LoadOptions) -> anyhow::Result<Report> {
    if opts.rate == 0 || opts.connections == 0 || opts.seconds.is_nan() || opts.seconds <= 0.0 {
        bail!("--rate, --connections and --seconds must be positive");
    }
    let host = opts.host.clone().unwrap_or_else(|| opts.to.to_string());
    let request = wire::request(&host, &opts.path, opts.body);
    let mut conns = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        let mut c = Conn::connect(opts.to)
            .with_context(|| format!("connection {i} to {} failed", opts.to))?;
        let status = c
            .exchange(&request)
            .with_context(|| format!("warm-up request on connection {i} failed"))?;
        if !(200..300).contains(&status) {
            bail!("warm-up request to {} answered {status}", opts.to);
        }
        conns.push(c);
    }
    let step = Duration::from_secs_f64(1.0 / f64::from(opts.rate));
    let total = (opts.seconds * f64::from(opts.rate)).round() as u64;
    let n = opts.connections as u64;
    // Start a little later so that every thread is waiting when the first request is due.
    let t0 = Instant::now() + Duration::from_millis(20);
    let threads: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let request = request.clone();
            let (to, i) = (opts.to, i as u64);
            std::thread::spawn(move || {
                let slots = (i..total).step_by(n as usize);
                drive(conn, to, &request, slots.map(|k| t0 + step * k as u32))
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0;
    for t in threads {
        let (lat, err) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
        latencies.extend(lat);
        errors += err;
    }
    let seconds = t0.elapsed().as_secs_f64().max(opts.seconds);
    Ok(summarize(latencies, errors, seconds))
}

/// Sends one request at each scheduled time on `conn` (reconnecting after a failure); the
/// latencies (µs) of the 2xx answers and the number of failures.
fn drive(
    mut conn: Conn,
    to: SocketAddr,
    request: &[u8],
    schedule: impl Iterator<Item = Instant>,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut broken = false;
    for due in schedule {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if broken {
            match Conn::connect(to) {
                Ok(c) => {
                    conn = c;
                    broken = false;
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            }
        }
        match conn.exchange(request) {
            Ok(status) if (200..300).contains(&status) => {
                let us = due.elapsed().as_micros();
                latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                broken = true;
            }
        }
    }
    (latencies, errors)
}

/// Percentiles of `latencies` (nearest rank).
fn summarize(mut latencies: Vec<u32>, errors: u64, seconds: f64) -> Report {
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        f64::from(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    Report {
        ok: latencies.len() as u64,
        errors,
        seconds,
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
        max_us: pct(100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let r = summarize((1..=100).rev().collect(), 3, 1.0);
        assert_eq!((r.ok, r.errors), (100, 3));
        assert_eq!(
            (r.p50_us, r.p90_us, r.p99_us, r.max_us),
            (50.0, 90.0, 99.0, 100.0)
        );
        let empty = summarize(Vec::new(), 5, 1.0);
        assert_eq!((empty.ok, empty.p99_us), (0, 0.0));
    }

    #[test]
    fn reports_survive_json() {
        let r = summarize(vec![10, 20, 30], 1, 2.5);
        assert_eq!(Report::from_json(&r.to_json()).expect("parses"), r);
        assert!(Report::from_json("nope").is_err());
    }

    #[test]
    fn bad_options_are_refused() {
        let opts = LoadOptions {
            to: "127.0.0.1:1".parse().expect("addr"),
            host: None,
            path: "/".into(),
            rate: 0,
            seconds: 1.0,
            body: 0,
            connections: 1,
        };
        assert!(run(&opts).is_err());
    }
}
