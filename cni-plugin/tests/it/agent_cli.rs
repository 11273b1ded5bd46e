//! The agent binary's refusals at startup, before it touches anything.

use std::process::Command;

#[test]
fn dns_capture_is_refused_while_ztunnel_serves_no_dns() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-cni-agent"))
        .args(["--node", "node-1", "--source", "local", "--dns-capture"])
        .arg("--local-state")
        .arg(state.path().join("cluster.yaml"))
        .arg("--state-dir")
        .arg(state.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted --dns-capture: {stderr}");
    assert!(stderr.contains("no DNS proxy on 15053"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "nothing written before the refusal"
    );
}
