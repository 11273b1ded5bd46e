//! CNI benchmark (issue 3 targets): how much `mesh-cni` adds to a pod start when the pod is not
//! enrolled (target < 50 ms), and how long a live enrolment after a namespace label takes until
//! the rules and ztunnel's listeners are in place (target < 1 s).
//!
//! ```sh
//! cargo build --release --bins && \
//!   MESH_PROFILE=release cargo run -p mesh-benches --release --example cni_enrolment -- --pods 10
//! ```
//!
//! Runs as root in network namespaces built by `mesh-testbed` (one node with a real
//! `mesh-cni-agent` and `ztunnel`); pods are created through the real chain bridge + host-local
//! + mesh-cni. Everything is removed at the end.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mesh_testbed::cni::cluster::{CniCluster, CniPod};
use mesh_testbed::cni::{PodArgs, run_plugin};

/// Options of the CNI benchmark.
#[derive(Debug, Parser)]
struct Opts {
    /// Pods per measure (all enrolled by one label change).
    #[arg(long, default_value_t = 10)]
    pods: usize,
    /// Label/unlabel rounds for the enrolment measure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let mut c = CniCluster::start("cnibench", 1).context("cluster")?;
    c.label_namespace("plain", &[])?;
    c.label_namespace("bench", &[])?;

    // 1. mesh-cni's share of a non-enrolled pod's CNI ADD: the plugin alone, with the
    //    chain's prevResult, against the real agent.
    let mut add_ms = Vec::new();
    let mut pods = Vec::new();
    for i in 0..opts.pods {
        let pod = c.create_pod(1, "plain", &format!("plain-{i}"), &[])?;
        add_ms.push(time_mesh_cni_add(&c, &pod)?);
        pods.push(pod);
    }

    // 2. Live enrolment of running pods after a namespace label.
    let bench: Vec<CniPod> = (0..opts.pods)
        .map(|i| c.create_pod(1, "bench", &format!("bench-{i}"), &[]))
        .collect::<anyhow::Result<_>>()?;
    let mut enrol_ms = Vec::new();
    let mut release_ms = Vec::new();
    for _ in 0..opts.rounds {
        // Timed until the agent marks every pod enrolled (it does so after ztunnel's Ack and
        // the rules); then both are verified.
        let start = Instant::now();
        c.label_namespace("bench", &[("istio.io/dataplane-mode", "ambient")])?;
        wait(|| c.redirected(1).len() == bench.len())?;
        enrol_ms.push(ms(start.elapsed()));
        anyhow::ensure!(
            bench
                .iter()
                .all(|p| p.ztunnel_listening() && p.rules_complete()),
            "enrolled pods lack rules or listeners"
        );
        let start = Instant::now();
        c.label_namespace("bench", &[])?;
        wait(|| c.redirected(1).is_empty())?;
        wait(|| bench.iter().all(|p| p.ztunnel_gone() && p.rules_absent()))?;
        release_ms.push(ms(start.elapsed()));
    }

    println!("| measure | p50 | max | target |");
    println!("|---|---|---|---|");
    row("mesh-cni ADD, pod not enrolled (ms)", &mut add_ms, "< 50");
    row(
        &format!("enrol {} running pods after a label (ms)", opts.pods),
        &mut enrol_ms,
        "< 1000",
    );
    row(
        &format!("release {} pods after unlabel (ms)", opts.pods),
        &mut release_ms,
        "-",
    );
    Ok(())
}

/// Runs only the `mesh-cni` step of ADD again for `pod` (idempotent for the agent) and times it.
fn time_mesh_cni_add(c: &CniCluster, pod: &CniPod) -> anyhow::Result<f64> {
    let chain = &c.node(1).chain;
    let mut conf = chain.conflist["plugins"][1].clone();
    conf["cniVersion"] = chain.conflist["cniVersion"].clone();
    conf["name"] = chain.conflist["name"].clone();
    conf["prevResult"] = pod.result.clone();
    let PodArgs {
        name,
        namespace,
        uid,
        container_id,
    } = &pod.args;
    let env = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", container_id.clone()),
        ("CNI_NETNS", pod.netns.path().display().to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}"),
        ),
    ];
    let node = &c.topology().nodes()[0].netns;
    let start = Instant::now();
    let out = run_plugin(
        node,
        &mesh_testbed::bin_path("mesh-cni"),
        &env,
        conf.to_string().as_bytes(),
    )
    .map_err(anyhow::Error::msg)?;
    let took = ms(start.elapsed());
    anyhow::ensure!(out.success(), "mesh-cni ADD failed: {}", out.stdout);
    Ok(took)
}

fn wait(mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, values: &mut [f64], target: &str) {
    values.sort_by(f64::total_cmp);
    let p50 = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
    let max = values.last().copied().unwrap_or(f64::NAN);
    println!("| {name} | {p50:.1} | {max:.1} | {target} |");
}
