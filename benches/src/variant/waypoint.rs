//! Through ztunnel -> waypoint -> ztunnel: the server pod is selected by a service bound to a
//! waypoint (a real `waypoint` process in its own pod on node 2, outside the mesh), the client
//! dials the service VIP, node 1's ztunnel sends the connection to the waypoint over HBONE, and
//! the waypoint sends it on to node 2's ztunnel over HBONE. The HTTP port is declared
//! `appProtocol: http` (the waypoint parses every request and routes it); the other ports are
//! `tcp` (the waypoint relays bytes), so every measure crosses the waypoint.

use std::path::PathBuf;

use anyhow::{Context, bail};
use mesh_testbed::Pod;
use mesh_testbed::l7::{Waypoint as WaypointProcess, WaypointFiles};
use mesh_testbed::mesh::{MeshNode, PodSpec, render};

use super::{Variant, locate_binary};
use crate::counters;
use crate::env::{BenchEnv, SERVER_NODE};
use crate::measure::{ECHO_PORT, HTTP_PORT, IPERF_PORT, SOCKPERF_PORT};
use crate::proc_status::{self, mib};

/// Environment variable naming the waypoint binary to benchmark instead of the default one.
pub const WAYPOINT_BIN_ENV: &str = "MESH_BENCH_WAYPOINT";
/// VIP of the benchmark's waypoint-bound service.
pub const SERVICE_VIP: &str = "10.96.0.20";
/// The waypoint's request counter (DESIGN.md 6).
const REQUESTS: &str = "istio_requests_total";
/// Namespace and service account of the waypoint (its identity and Gateway name).
const NAMESPACE: &str = "default";
const WAYPOINT_SA: &str = "waypoint";

/// One ztunnel per node, the server behind a waypoint-bound service.
#[derive(Default)]
pub struct Waypoint {
    // Drop order: the waypoint, its pod, the ztunnels, then the files.
    waypoint: Option<WaypointProcess>,
    pod: Option<Pod>,
    nodes: Vec<MeshNode>,
    dir: Option<tempfile::TempDir>,
    /// Requests the waypoint had counted before the measures.
    requests_before: f64,
    /// Resident size of the waypoint once set up, before any load (KiB).
    idle_rss_kib: u64,
    /// Resident size right after the HTTP measure (the first one), in KiB.
    loaded_rss_kib: Option<u64>,
}

impl Waypoint {
    fn process(&self) -> anyhow::Result<&WaypointProcess> {
        self.waypoint
            .as_ref()
            .context("no waypoint running: setup did not run")
    }

    fn requests(&self) -> anyhow::Result<f64> {
        Ok(counters::sum(
            &self.process()?.metrics(),
            REQUESTS,
            "waypoint",
        ))
    }
}

/// The mesh config: every pod as a workload, the waypoint-bound service selecting the server.
fn services(waypoint_ip: &str) -> String {
    let tcp = |p: u16| format!("{{port: {p}, targetPort: {p}, appProtocol: tcp}}");
    format!(
        "services:\n  - {{name: server, namespace: {NAMESPACE}, vips: [{SERVICE_VIP}], selector: {{app: server}}, \
         waypoint: {{address: {waypoint_ip}}}, ports: [{}, {}, {}, {{port: {HTTP_PORT}, targetPort: {HTTP_PORT}, \
         appProtocol: http}}]}}\n",
        tcp(IPERF_PORT),
        tcp(SOCKPERF_PORT),
        tcp(ECHO_PORT),
    )
}

impl Variant for Waypoint {
    fn name(&self) -> &str {
        "waypoint"
    }

    fn setup(&mut self, env: &BenchEnv) -> anyhow::Result<()> {
        let ztunnel_bin = locate_binary()?;
        let waypoint_bin = locate_waypoint()?;
        eprintln!(
            "mesh-benches: ztunnel binary {}, waypoint binary {}",
            ztunnel_bin.display(),
            waypoint_bin.display()
        );
        let (dir, ca_cert, ca_key) = super::ztunnel::mesh_dir()?;
        let pod = env
            .topology
            .add_pod(SERVER_NODE, WAYPOINT_SA)
            .context("cannot create the waypoint pod")?;
        let specs = [
            PodSpec::new(&env.client.name),
            PodSpec::new(&env.server.name).label("app", "server"),
            PodSpec::new(WAYPOINT_SA).outside(),
        ];
        let pods = [
            (&specs[0], &env.client),
            (&specs[1], &env.server),
            (&specs[2], &pod),
        ];
        let config = dir.path().join("mesh.yaml");
        std::fs::write(&config, render(pods, &services(&pod.ip.to_string())))?;
        self.nodes = super::ztunnel::start_ztunnels(
            env,
            dir.path(),
            &config,
            (&ca_cert, &ca_key),
            &ztunnel_bin,
        )?;
        for (spec, p) in &pods[..2] {
            self.nodes
                .get(usize::from(p.node) - 1)
                .context("no ztunnel on the pod's node")?
                .enroll(spec, p)
                .with_context(|| format!("cannot enrol pod {}", p.name))?;
        }
        let files = WaypointFiles {
            config: config.clone(),
            ca_cert,
            ca_key,
            routes: dir.path().join("routes"),
            args: Vec::new(),
        };
        let waypoint =
            WaypointProcess::start_with(&waypoint_bin, &pod, &files, NAMESPACE, WAYPOINT_SA)
                .context("cannot start the waypoint")?;
        self.waypoint = Some(waypoint);
        self.pod = Some(pod);
        self.dir = Some(dir);
        Ok(())
    }

    fn ready(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        let pid = self.process()?.process().pid();
        self.requests_before = self.requests()?;
        self.idle_rss_kib = proc_status::memory(pid)?.rss_kib;
        Ok(())
    }

    fn target(&self, _env: &BenchEnv, port: u16) -> std::net::SocketAddr {
        let vip: std::net::Ipv4Addr = SERVICE_VIP.parse().unwrap_or([10, 96, 0, 20].into());
        std::net::SocketAddr::from((vip, port))
    }

    fn watched(&self) -> Vec<(String, u32)> {
        self.waypoint
            .iter()
            .map(|w| ("waypoint".to_owned(), w.process().pid()))
            .collect()
    }

    fn after_http(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        let pid = self.process()?.process().pid();
        self.loaded_rss_kib = Some(proc_status::memory(pid)?.rss_kib);
        Ok(())
    }

    fn extra(&mut self, _env: &BenchEnv) -> anyhow::Result<Vec<(String, f64, String)>> {
        let wp = self.process()?;
        let memory = proc_status::memory(wp.process().pid())?;
        let requests = self.requests()? - self.requests_before;
        eprintln!("mesh-benches: requests through the waypoint: {requests}");
        if requests < 1.0 {
            bail!(
                "HTTP traffic did not go through the waypoint ({REQUESTS} did not move); check the \
                 ztunnel logs and the waypoint log {}",
                wp.process().stdout_path().display()
            );
        }
        let unit = String::from("MiB");
        let mut rows = vec![(
            "waypoint RSS idle".to_owned(),
            mib(self.idle_rss_kib),
            unit.clone(),
        )];
        if let Some(kib) = self.loaded_rss_kib {
            rows.push((
                "waypoint RSS after the HTTP measure".to_owned(),
                mib(kib),
                unit.clone(),
            ));
        }
        rows.push((
            "waypoint RSS peak (VmHWM, all measures)".to_owned(),
            mib(memory.peak_kib),
            unit,
        ));
        Ok(rows)
    }
}

/// The `waypoint` binary: `$MESH_BENCH_WAYPOINT` if set, else the one next to this executable
/// (same build profile).
pub fn locate_waypoint() -> anyhow::Result<PathBuf> {
    super::ztunnel::locate("waypoint", WAYPOINT_BIN_ENV)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_binds_every_bench_port_to_the_waypoint() {
        let yaml = format!("workloads: []\n{}", services("10.2.0.9"));
        let snap = mesh_api::file::parse(&yaml).expect("a valid mesh config");
        let vip: std::net::IpAddr = SERVICE_VIP.parse().expect("vip");
        let svc = snap.service_by_vip(vip).expect("the service");
        for p in [IPERF_PORT, SOCKPERF_PORT, ECHO_PORT, HTTP_PORT] {
            let port = svc.port(p).expect("every bench port");
            assert_eq!(port.target_port, p);
        }
        assert_eq!(
            svc.port(HTTP_PORT).and_then(|p| p.app_protocol.as_deref()),
            Some("http")
        );
        assert_eq!(
            svc.port(IPERF_PORT).and_then(|p| p.app_protocol.as_deref()),
            Some("tcp")
        );
        assert!(yaml.contains("waypoint: {address: 10.2.0.9}"), "{yaml}");
    }
}
