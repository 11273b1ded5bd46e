//! The plain-relay floor end to end (needs root, iperf3 and sockperf): every measure goes
//! through the two relays, and none fails.

use std::path::PathBuf;

use mesh_benches::{Relay, Settings, measure};

#[test]
fn relay_variant_carries_every_measure() {
    let settings = Settings::smoke(PathBuf::from(env!("CARGO_BIN_EXE_mesh-benches")));
    let results = measure::run_variant(Box::new(Relay::default()), &settings).expect("relay run");
    assert_eq!(results.variant, "relay");
    assert_eq!(results.rows.len(), 9, "{results:?}");
    for row in &results.rows {
        if row.name.contains("failed") {
            assert_eq!(row.value, 0.0, "{row:?}");
        } else {
            assert!(row.value.is_finite() && row.value > 0.0, "{row:?}");
        }
    }
}
