//! The harness end to end through two real ztunnels (needs root, iperf3, sockperf and a ztunnel
//! binary of the same profile: `cargo build -p ztunnel`). The variant itself fails when the
//! ztunnels' connection counters did not move, so a passing run proves the traffic was tunnelled.

use std::path::PathBuf;

use mesh_benches::{Settings, Ztunnel, measure};

#[test]
fn ztunnel_variant_tunnels_every_measure_and_reports_memory() {
    // A lower latency rate than the smoke default: two debug-build ztunnels on the path.
    let settings = Settings {
        rate: 500,
        ..Settings::smoke(PathBuf::from(env!("CARGO_BIN_EXE_mesh-benches")))
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
