//! The harness end to end through two real ztunnels (needs root, iperf3, sockperf and a ztunnel
//! binary of the same profile: `cargo build -p ztunnel`). The variant itself fails when the
//! ztunnels' connection counters did not move, so a passing run proves the traffic was tunnelled.

use std::path::PathBuf;
use std::time::Duration;

use mesh_benches::{Settings, Ztunnel, measure};

#[test]
fn ztunnel_variant_tunnels_every_measure_and_reports_memory() {
    let settings = Settings {
        duration: Duration::from_secs(1),
        rate: 500,
        concurrency: 1,
        http_rate: 200,
        http_connections: 2,
        testapp: PathBuf::from(env!("CARGO_BIN_EXE_mesh-benches")),
        hold: false,
    };
    let results =
        measure::run_variant(Box::new(Ztunnel::default()), &settings).expect("ztunnel run");
    assert_eq!(results.variant, "ztunnel");
    let names: Vec<&str> = results.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(results.rows.len(), 11, "{names:?}");
    let value = |name: &str| {
        results
            .rows
            .iter()
            .find(|r| r.name.starts_with(name))
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("no row {name:?} in {names:?}"))
    };
    assert!(value("throughput, 1 stream") > 0.0);
    assert!(value("new connections") > 0.0);
    let idle = value("ztunnel RSS idle");
    let peak = value("ztunnel RSS peak");
    // A running ztunnel has a few MiB resident at least; the peak is never below the idle size.
    assert!(
        idle > 1.0 && peak >= idle,
        "idle {idle} MiB, peak {peak} MiB"
    );
}
