//! The harness end to end with the proxy-less variants, `direct` and the plain-relay floor `relay`
//! (needs root, iperf3 and sockperf): every measure runs and none fails.

use std::path::PathBuf;

use mesh_benches::{Direct, Relay, Results, Settings, measure, report};

/// Nine rows, every failure count zero, every other value a positive number.
fn assert_every_row_measured(results: &Results) {
    assert_eq!(results.rows.len(), 9, "{results:?}");
    for row in &results.rows {
        if row.name.contains("failed") {
            assert_eq!(row.value, 0.0, "{row:?}");
        } else {
            assert!(row.value.is_finite() && row.value > 0.0, "{row:?}");
        }
    }
}

#[test]
fn direct_variant_measures_every_row() {
    let settings = Settings::smoke(PathBuf::from(env!("CARGO_BIN_EXE_mesh-benches")));
    let results = measure::run_variant(Box::new(Direct), &settings).expect("direct run");
    assert_eq!(results.variant, "direct");
    assert_every_row_measured(&results);
    let p50 = results.rows[2].value;
    let p99 = results.rows[3].value;
    assert!(p50 <= p99, "p50 {p50} > p99 {p99}");
    let http = |prefix: &str| {
        results
            .rows
            .iter()
            .find(|r| r.name.starts_with(prefix))
            .map(|r| r.value)
            .unwrap_or_else(|| panic!("no row {prefix:?}"))
    };
    assert!(http("HTTP p50") <= http("HTTP p99"));
    let table = report::table(&[results]);
    assert!(table.contains("throughput, 4 streams"), "{table}");
}

#[test]
fn relay_variant_carries_every_measure() {
    let settings = Settings::smoke(PathBuf::from(env!("CARGO_BIN_EXE_mesh-benches")));
    let results = measure::run_variant(Box::new(Relay::default()), &settings).expect("relay run");
    assert_eq!(results.variant, "relay");
    assert_every_row_measured(&results);
}
