//! The L4 demo: two nodes (network namespaces), a client and two echo pods, one real ztunnel per node.
//! Shows traffic flowing through the mesh, that the bytes between nodes are TLS on 15008 and never the
//! plaintext, the identities the destination saw, and an authorization policy taking effect live.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_testbed::mesh::{Mesh, MeshBuilder, PodSpec};
use mesh_testbed::{Capture, Pod, bin_path};

const SERVICES: &str = "services:
  - {name: echo, namespace: default, vips: [10.96.0.10], ports: [{port: 80, targetPort: 8080}], selector: {app: echo}}
";

const DENY_CLIENT: &str = "authorizationPolicies:
  - name: deny-client
    namespace: default
    action: DENY
    rules:
      - from: [{source: {principals: [\"cluster.local/ns/default/sa/client\"]}}]
";

fn send(pod: &Pod, to: SocketAddr, data: &str) -> anyhow::Result<Result<String, String>> {
    let to = to.to_string();
    let out = pod.netns.run_timeout(
        bin_path("mesh-testapp"),
        &[
            "send",
            "--to",
            to.as_str(),
            "--data",
            data,
            "--timeout-ms",
            "3000",
        ],
        Duration::from_secs(5),
    )?;
    Ok(if out.success() {
        Ok(out.stdout)
    } else {
        Err(out.stderr.trim().to_owned())
    })
}

fn main() -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the demo creates network namespaces: run it as root");
    }
    println!("== building a 2-node cluster in network namespaces, one ztunnel per node");
    let mut b = MeshBuilder::new("demo", 2)?;
    let client = b.pod(1, PodSpec::new("client"))?;
    let echo_a = b.pod(1, PodSpec::new("echo-a").sa("echo").label("app", "echo"))?;
    let echo_b = b.pod(2, PodSpec::new("echo-b").sa("echo").label("app", "echo"))?;
    b.yaml(SERVICES);
    let mut mesh = b.start()?;
    let mut servers = Vec::new();
    for i in [echo_a, echo_b] {
        let mut p = mesh.pod(i).spawn(
            bin_path("mesh-testapp"),
            &["serve", "--port", "8080", "--banner"],
        )?;
        p.wait_for_output("listening on", Duration::from_secs(10))?;
        servers.push(p);
    }
    for i in [client, echo_a, echo_b] {
        let p = mesh.pod(i);
        println!(
            "   pod {:<7} node-{}  {}  (enrolled: rules in its netns, listeners of ztunnel inside)",
            p.name, p.node, p.ip
        );
    }

    println!("\n== client -> service echo (10.96.0.10:80), 6 connections, capturing node-1's link");
    let capture = Capture::node_fabric(&mesh.topology().nodes()[0])?;
    let marker = "SECRET-PAYLOAD-1234";
    let vip: SocketAddr = "10.96.0.10:80".parse()?;
    for i in 0..6 {
        match send(mesh.pod(client), vip, &format!("{marker}-{i}"))? {
            Ok(reply) => println!("   #{i}: {}", reply.lines().next().unwrap_or_default()),
            Err(e) => bail!("connection {i} failed: {e}"),
        }
    }
    let summary = capture.stop()?;
    println!("   ports seen on the node link: {:?}", summary.ports());
    println!(
        "   plaintext payload on the node link: {}",
        if summary.contains(marker.as_bytes()) {
            "YES (not encrypted!)"
        } else {
            "no: only TLS on 15008"
        }
    );

    print_metrics(&mesh)?;

    println!("\n== applying an AuthorizationPolicy that denies sa/client");
    mesh.update_yaml(&format!("{SERVICES}{DENY_CLIENT}"))?;
    let remote = SocketAddr::new(mesh.pod(echo_b).ip.into(), 8080);
    match send(mesh.pod(client), remote, "after-deny")? {
        Ok(_) => bail!("the DENY policy was not enforced"),
        Err(e) => println!("   client -> echo-b refused as expected: {e}"),
    }
    let log = mesh.node(2).ztunnel().stdout();
    if let Some(line) = log.lines().rev().find(|l| l.contains("deny-client")) {
        println!("   node-2 access log: {}", line.trim());
    }
    println!("\n== done; removing namespaces and processes");
    drop(servers);
    Ok(())
}

fn print_metrics(mesh: &Mesh) -> anyhow::Result<()> {
    println!("\n== metrics of the destination ztunnels (reporter=destination)");
    for n in [1u8, 2] {
        let text = mesh.node(n).metrics().context("metrics")?;
        for l in text.lines().filter(|l| {
            l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("reporter=\"destination\"")
        }) {
            let pick = |k: &str| {
                l.split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("?")
                    .to_owned()
            };
            let count = l.rsplit(' ').next().unwrap_or("?");
            println!(
                "   node-{n}: {} -> {}  {}  connections={count}",
                pick("source_principal"),
                pick("destination_workload"),
                pick("connection_security_policy")
            );
        }
    }
    Ok(())
}
