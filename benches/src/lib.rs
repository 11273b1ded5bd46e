//! Benchmark harness of the mesh (DESIGN.md section 9): the same measures for every
//! [`Variant`] (direct, through ztunnel, ...), each in a fresh two-node topology of network
//! namespaces, printed as one table with ratios to direct.

pub mod counters;
pub mod cpu;
pub mod env;
pub mod http;
pub mod measure;
pub mod proc_status;
pub mod report;
pub mod rounds;
pub mod spin;
pub mod variant;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

pub use env::BenchEnv;
pub use measure::{Results, Settings};
pub use variant::{Direct, Relay, Variant, Waypoint, Ztunnel, all_variants};

/// First argument that makes the binary act as `mesh-testapp` (used inside the pods).
pub const TESTAPP_SUBCOMMAND: &str = "testapp";

/// Command line of `mesh-benches`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mesh-benches",
    about = "Throughput, latency and connection rate: direct vs through the mesh"
)]
pub struct Options {
    /// Duration of each measure, in seconds.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// Messages per second of the latency measure (sockperf ping-pong, 1 KiB messages).
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Requests per second of the HTTP measure (1 KiB POST bodies, fixed rate).
    #[arg(long, default_value_t = 1000)]
    pub http_rate: u32,
    /// Kept-alive connections of the HTTP measure.
    #[arg(long, default_value_t = 8)]
    pub http_connections: usize,
    /// Parallel client loops of the connection-rate measure: two per core by default, so the
    /// measure finds the rate the machine can carry rather than one loop's round trip.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Variants to run (comma separated); all known ones by default.
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Do not run low-priority spinners on every core (they keep CPUs out of idle states so
    /// that latency is comparable between variants).
    #[arg(long)]
    pub no_spin: bool,
    /// Rounds: every selected variant is measured once per round, in order, and with more than
    /// one round the table gives per measure the median, the range and the median of the
    /// same-round ratios (this guest's figures drift between runs minutes apart).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Also print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Before measuring each variant, print its namespaces and wait for Enter (to inspect
    /// the setup by hand).
    #[arg(long)]
    pub hold: bool,
}

/// Runs every selected variant and prints the table.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "mesh-benches creates network namespaces: run it as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        );
    }
    // Unknown names fail here, before any setup.
    selected_variants(opts)?;
    let settings = Settings {
        duration: Duration::from_secs(opts.seconds.max(1)),
        rate: opts.rate,
        concurrency: opts.concurrency.max(1),
        http_rate: opts.http_rate.max(1),
        http_connections: opts.http_connections.max(1),
        testapp: std::env::current_exe()
            .context("cannot find our own executable to run the test app")?,
        hold: opts.hold,
    };
    let _spinners = if opts.no_spin {
        None
    } else {
        Some(spin::Spinners::start()?)
    };
    let rounds = opts.rounds.max(1);
    let mut all_rounds = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let mut all = Vec::new();
        for variant in selected_variants(opts)? {
            let name = variant.name().to_owned();
            eprintln!("mesh-benches: round {round}/{rounds}: running variant {name}");
            let results = measure::run_variant(variant, &settings)
                .with_context(|| format!("variant {name} failed in round {round}"))?;
            all.push(results);
        }
        if rounds > 1 {
            eprint!(
                "mesh-benches: round {round}/{rounds}:\n{}",
                report::table(&all)
            );
        }
        all_rounds.push(all);
    }
    let results = if rounds > 1 {
        let summary = rounds::summarise(&all_rounds);
        print!("{}", report::summary_table(&summary));
        summary.as_results()
    } else {
        let all = all_rounds.pop().unwrap_or_default();
        print!("{}", report::table(&all));
        all
    };
    if opts.json {
        println!("{}", report::json(&results));
    }
    Ok(())
}

/// The variants named by `--variants` (all when none), fresh instances in the known order.
fn selected_variants(opts: &Options) -> anyhow::Result<Vec<Box<dyn Variant>>> {
    let mut variants = all_variants();
    if !opts.variants.is_empty() {
        let known: Vec<String> = variants.iter().map(|v| v.name().to_owned()).collect();
        for wanted in &opts.variants {
            if !known.contains(wanted) {
                bail!(
                    "unknown variant {wanted:?}; known variants: {}",
                    known.join(", ")
                );
            }
        }
        variants.retain(|v| opts.variants.iter().any(|w| w == v.name()));
    }
    Ok(variants)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
