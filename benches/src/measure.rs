//! The measures, run the same way for every variant.

mod connrate;
pub mod http;
mod iperf;
mod sockperf;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use mesh_testbed::Process;
use mesh_testbed::testapp::cli::READY_LINE;

use crate::TESTAPP_SUBCOMMAND;
use crate::env::BenchEnv;
use crate::variant::Variant;

/// Server ports inside the server pod.
pub const IPERF_PORT: u16 = 5201;
/// sockperf server port.
pub const SOCKPERF_PORT: u16 = 11111;
/// Test-app echo server port (connection rate).
pub const ECHO_PORT: u16 = 7000;
/// HTTP echo server port (`mesh-benches http echo`).
pub const HTTP_PORT: u16 = 8080;
/// How long servers get to start listening.
const SERVER_START: Duration = Duration::from_secs(10);
/// Slack added to a measure's duration before its client is considered hung.
const CLIENT_SLACK: Duration = Duration::from_secs(30);

/// Parameters shared by all measures.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Duration of each measure.
    pub duration: Duration,
    /// Latency measure rate (messages per second).
    pub rate: u32,
    /// Connection-rate client loops.
    pub concurrency: usize,
    /// HTTP measure rate (requests per second, 1 KiB bodies).
    pub http_rate: u32,
    /// Kept-alive connections of the HTTP measure.
    pub http_connections: usize,
    /// The executable that runs the test app (`<it> testapp ...`).
    pub testapp: PathBuf,
    /// Once the variant is ready, print where everything runs and wait for a line on stdin
    /// before measuring (to poke at the setup by hand: `ip netns exec`, perf, strace).
    pub hold: bool,
}

impl Settings {
    /// One-second measures at low rates: a smoke run that checks a variant carries every measure
    /// (the harness's own tests), not a benchmark.
    pub fn smoke(testapp: PathBuf) -> Settings {
        Settings {
            duration: Duration::from_secs(1),
            rate: 1000,
            concurrency: 1,
            http_rate: 200,
            http_connections: 2,
            testapp,
            hold: false,
        }
    }

    fn client_timeout(&self) -> Duration {
        self.duration + CLIENT_SLACK
    }
}

/// One measured number.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Whether more is better (throughput) or worse (latency); decides how ratios read.
    pub higher_is_better: bool,
}

impl Row {
    fn new(name: impl Into<String>, value: f64, unit: &str, higher_is_better: bool) -> Row {
        Row {
            name: name.into(),
            value,
            unit: unit.into(),
            higher_is_better,
        }
    }
}

/// Everything measured for one variant.
#[derive(Debug, Clone)]
pub struct Results {
    /// The variant's name.
    pub variant: String,
    /// The numbers, in a fixed order.
    pub rows: Vec<Row>,
}

struct Servers {
    _procs: Vec<Process>,
}

fn start_servers(env: &BenchEnv, settings: &Settings) -> anyhow::Result<Servers> {
    let pod = &env.server;
    let iperf = pod.spawn("iperf3", &["-s", "-p", &IPERF_PORT.to_string()])?;
    let sockperf = pod.spawn(
        "sockperf",
        &[
            "server",
            "--tcp",
            "-i",
            "0.0.0.0",
            "-p",
            &SOCKPERF_PORT.to_string(),
        ],
    )?;
    let mut echo = pod.spawn(
        &settings.testapp,
        &[
            TESTAPP_SUBCOMMAND,
            "serve",
            "--port",
            &ECHO_PORT.to_string(),
        ],
    )?;
    echo.wait_for_output(READY_LINE, SERVER_START)
        .context("echo server did not start")?;
    let mut http = pod.spawn(
        &settings.testapp,
        &[
            crate::http::HTTP_SUBCOMMAND,
            "echo",
            "--port",
            &HTTP_PORT.to_string(),
        ],
    )?;
    http.wait_for_output(mesh_testbed::echo::READY_LINE, SERVER_START)
        .context("HTTP echo server did not start")?;
    for port in [IPERF_PORT, SOCKPERF_PORT] {
        pod.netns
            .wait_listening(port, SERVER_START)
            .context("iperf3/sockperf server did not start")?;
    }
    Ok(Servers {
        _procs: vec![iperf, sockperf, echo, http],
    })
}

/// Builds a fresh environment, prepares `variant`, runs every measure and tears it all down
/// (the servers, then the variant's processes, then the namespaces), also when a step failed.
pub fn run_variant(mut variant: Box<dyn Variant>, settings: &Settings) -> anyhow::Result<Results> {
    let env = BenchEnv::new(
        &format!("bench-{}", variant.name()),
        settings.testapp.clone(),
    )?;
    let results = measure_all(variant.as_mut(), &env, settings);
    drop(variant);
    drop(env);
    results
}

fn measure_all(
    variant: &mut dyn Variant,
    env: &BenchEnv,
    settings: &Settings,
) -> anyhow::Result<Results> {
    variant.setup(env).context("variant setup failed")?;
    let servers = start_servers(env, settings)?;
    variant.ready(env).context("variant did not become ready")?;
    if settings.hold {
        hold(env)?;
    }
    // HTTP first, so that the proxies' memory and CPU reflect that load alone; its rows go last.
    let http = http::latency(
        env,
        variant.target(env, HTTP_PORT),
        settings,
        &variant.watched(),
    )?;
    variant.after_http(env)?;
    let mut rows = Vec::new();
    for streams in [1, 4] {
        let target = variant.target(env, IPERF_PORT);
        let bps = iperf::throughput(env, target, streams, settings)?;
        let label = if streams == 1 { "stream" } else { "streams" };
        rows.push(Row::new(
            format!("throughput, {streams} {label}"),
            bps / 1e9,
            "Gbit/s",
            true,
        ));
    }
    let (p50, p99) = sockperf::latency(env, variant.target(env, SOCKPERF_PORT), settings)?;
    let at = format!("1 KiB @ {}/s", settings.rate);
    rows.push(Row::new(format!("latency p50 ({at})"), p50, "us", false));
    rows.push(Row::new(format!("latency p99 ({at})"), p99, "us", false));
    let (rate, failed) = connrate::rate(env, variant.target(env, ECHO_PORT), settings)?;
    rows.push(Row::new(
        format!("new connections ({} loops)", settings.concurrency),
        rate,
        "conn/s",
        true,
    ));
    rows.push(Row::new(
        "failed connections",
        failed as f64,
        "count",
        false,
    ));
    let at = format!("1 KiB POST @ {}/s", settings.http_rate);
    let r = &http.report;
    rows.push(Row::new(format!("HTTP p50 ({at})"), r.p50_us, "us", false));
    rows.push(Row::new(format!("HTTP p99 ({at})"), r.p99_us, "us", false));
    rows.push(Row::new(
        "HTTP failed requests",
        r.errors as f64,
        "count",
        false,
    ));
    for (label, cores) in &http.cpu {
        rows.push(Row::new(
            format!("{label} CPU ({at})"),
            *cores,
            "cores",
            false,
        ));
    }
    for (name, value, unit) in variant.extra(env)? {
        rows.push(Row::new(name, value, &unit, false));
    }
    drop(servers);
    Ok(Results {
        variant: variant.name().to_owned(),
        rows,
    })
}

/// Prints the namespaces and server ports, then waits for a line (or end of input) on stdin.
fn hold(env: &BenchEnv) -> anyhow::Result<()> {
    let nodes: Vec<&str> = env
        .topology
        .nodes()
        .iter()
        .map(|n| n.netns.name())
        .collect();
    eprintln!(
        "mesh-benches: holding. client pod netns {} ({}), server pod netns {} ({}), nodes {}; \
         servers: iperf3 {IPERF_PORT}, sockperf {SOCKPERF_PORT}, echo {ECHO_PORT}, HTTP {HTTP_PORT}. \
         Press Enter to measure.",
        env.client.netns.name(),
        env.client.ip,
        env.server.netns.name(),
        env.server.ip,
        nodes.join(", "),
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read stdin while holding")?;
    Ok(())
}
