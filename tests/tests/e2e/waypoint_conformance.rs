//! The Gateway API mesh conformance suite (v1.6.0 cases in `tests/conformance/`) against the
//! network-namespace harness: real ztunnels, a real waypoint, curl from inside the client pods.
//! Prints one line per test and fails if any test fails.

use mesh_testbed::l7::conformance::{ConformanceMesh, conformance_dir, group, load_cases};

#[test]
fn gateway_api_mesh_conformance() {
    let dir = conformance_dir();
    let cases = load_cases(&dir).unwrap();
    let tests = group(&cases);
    assert_eq!(tests.len(), 22, "the suite has 22 tests");
    let env = ConformanceMesh::start().unwrap();
    let mut failed = Vec::new();
    for (test, cases) in &tests {
        let outcome = env.run_test(&dir, test, cases);
        let verdict = if outcome.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "{verdict} {test} ({} cases, {:.1}s)",
            cases.len(),
            outcome.took.as_secs_f64()
        );
        for f in &outcome.failures {
            println!("    {f}");
        }
        if !outcome.failures.is_empty() {
            failed.push(test.clone());
        }
    }
    println!(
        "conformance: {} passed, {} failed",
        tests.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\nwaypoint log tail:\n{}",
        env.waypoint()
            .logs()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
