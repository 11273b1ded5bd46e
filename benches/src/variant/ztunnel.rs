//! Through the mesh: a real `ztunnel` process per node, both pods enrolled with the real redirect
//! rules and handoff, so the client's connection to the server pod's IP is captured on node 1,
//! tunnelled over HBONE (mTLS + HTTP/2 CONNECT) to node 2's ztunnel and delivered to the server.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mesh_identity::CertificateAuthority;
use mesh_testbed::mesh::{MeshNode, PodSpec, ZtunnelFiles, render};

use super::Variant;
use crate::counters::{self, CONNECTIONS_OPENED};
use crate::env::{BenchEnv, CLIENT_NODE, SERVER_NODE};
use crate::proc_status::{self, mib};

/// Fewest tunnelled connections the measures make: iperf3 opens a control and a data connection
/// per stream (2 + 5), sockperf one, the connection-rate measure at least one.
pub const MIN_TUNNELLED: f64 = 9.0;

/// Client and server pods enrolled, one ztunnel per node.
#[derive(Default)]
pub struct Ztunnel {
    bin: Option<PathBuf>,
    // Drop order: the ztunnels and handoff servers before their files.
    nodes: Vec<MeshNode>,
    dir: Option<tempfile::TempDir>,
    /// Connections opened per reporter before the measures: (source on node 1, destination on node 2).
    opened_before: (f64, f64),
    /// Largest resident size of the ztunnels once set up, before any load (KiB).
    idle_rss_kib: u64,
}

impl Ztunnel {
    /// Uses the ztunnel binary at `bin` instead of looking for one next to this executable.
    pub fn with_binary(bin: PathBuf) -> Ztunnel {
        Ztunnel {
            bin: Some(bin),
            ..Ztunnel::default()
        }
    }

    fn node(&self, n: u8) -> anyhow::Result<&MeshNode> {
        self.nodes
            .get(usize::from(n) - 1)
            .with_context(|| format!("no ztunnel on node {n}: setup did not run"))
    }

    /// Connections opened so far: (node 1 as source, node 2 as destination).
    fn opened(&self) -> anyhow::Result<(f64, f64)> {
        let src = self.node(CLIENT_NODE)?.metrics()?;
        let dst = self.node(SERVER_NODE)?.metrics()?;
        Ok((
            counters::sum(&src, CONNECTIONS_OPENED, "source"),
            counters::sum(&dst, CONNECTIONS_OPENED, "destination"),
        ))
    }

    /// Resident memory of every ztunnel: (largest VmRSS, largest VmHWM), in KiB.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let mut max = (0, 0);
        for node in &self.nodes {
            let m = proc_status::memory(node.ztunnel().pid())
                .with_context(|| format!("memory of {}", node.ztunnel().label()))?;
            max = (max.0.max(m.rss_kib), max.1.max(m.peak_kib));
        }
        Ok(max)
    }
}

impl Variant for Ztunnel {
    fn name(&self) -> &str {
        "ztunnel"
    }

    fn setup(&mut self, env: &BenchEnv) -> anyhow::Result<()> {
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => locate_binary()?,
        };
        eprintln!("mesh-benches: ztunnel binary {}", bin.display());
        let (dir, ca_cert, ca_key) = mesh_dir()?;
        let specs = [
            PodSpec::new(&env.client.name),
            PodSpec::new(&env.server.name),
        ];
        let config = dir.path().join("ztunnel.yaml");
        let pods = [(&specs[0], &env.client), (&specs[1], &env.server)];
        std::fs::write(&config, render(pods, ""))?;
        self.nodes = start_ztunnels(env, dir.path(), &config, (&ca_cert, &ca_key), &bin)?;
        self.dir = Some(dir);
        for (spec, pod) in pods {
            self.node(pod.node)?
                .enroll(spec, pod)
                .with_context(|| format!("cannot enrol pod {}", pod.name))?;
        }
        Ok(())
    }

    fn ready(&mut self, _env: &BenchEnv) -> anyhow::Result<()> {
        self.opened_before = self.opened()?;
        self.idle_rss_kib = self.memory()?.0;
        Ok(())
    }

    fn extra(&mut self, _env: &BenchEnv) -> anyhow::Result<Vec<(String, f64, String)>> {
        let (_, peak_kib) = self.memory()?;
        let after = self.opened()?;
        let src = after.0 - self.opened_before.0;
        let dst = after.1 - self.opened_before.1;
        eprintln!(
            "mesh-benches: tunnelled connections: {src} opened by node {CLIENT_NODE}'s ztunnel, {dst} by node {SERVER_NODE}'s"
        );
        if src < MIN_TUNNELLED || dst < MIN_TUNNELLED {
            bail!(
                "traffic did not go through the ztunnels: {CONNECTIONS_OPENED} moved by {src} (source, node \
                 {CLIENT_NODE}) and {dst} (destination, node {SERVER_NODE}), expected at least {MIN_TUNNELLED}; \
                 check the redirect rules and the ztunnel logs ({})",
                self.nodes
                    .iter()
                    .map(|n| n.ztunnel().stdout_path().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let unit = String::from("MiB");
        Ok(vec![
            (
                "ztunnel RSS idle (max of 2)".into(),
                mib(self.idle_rss_kib),
                unit.clone(),
            ),
            (
                "ztunnel RSS peak (VmHWM, max of 2)".into(),
                mib(peak_kib),
                unit,
            ),
        ])
    }
}

/// A fresh directory for a variant's mesh files with a new mesh CA in it: (dir, CA cert, CA key).
pub fn mesh_dir() -> anyhow::Result<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("mesh-bench-")
        .tempdir()
        .context("cannot create a directory for the mesh files")?;
    let ca = CertificateAuthority::generate(mesh_identity::DEFAULT_TRUST_DOMAIN)
        .context("cannot generate the mesh CA")?;
    let (ca_cert, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
    std::fs::write(&ca_cert, ca.cert_pem())?;
    std::fs::write(&ca_key, ca.key_pem())?;
    Ok((dir, ca_cert, ca_key))
}

/// Starts `bin` as the ztunnel of every node of `env`, with the mesh `config` and the CA files,
/// handoff sockets in `dir`.
pub fn start_ztunnels(
    env: &BenchEnv,
    dir: &Path,
    config: &Path,
    (ca_cert, ca_key): (&Path, &Path),
    bin: &Path,
) -> anyhow::Result<Vec<MeshNode>> {
    env.topology
        .nodes()
        .iter()
        .map(|node| {
            let socket = dir.join(format!("handoff-{}.sock", node.index));
            let files = ZtunnelFiles {
                config,
                ca_cert,
                ca_key,
                socket: &socket,
            };
            MeshNode::start_with(node, &files, bin)
                .with_context(|| format!("cannot start the ztunnel of {}", node.name()))
        })
        .collect()
}

/// Environment variable naming the ztunnel binary to benchmark instead of the default one.
pub const ZTUNNEL_BIN_ENV: &str = "MESH_BENCH_ZTUNNEL";

/// The `ztunnel` binary: `$MESH_BENCH_ZTUNNEL` if set, else the one of the same build profile as
/// this executable (`target/release/ztunnel` for `cargo run --release`).
pub fn locate_binary() -> anyhow::Result<PathBuf> {
    locate("ztunnel", ZTUNNEL_BIN_ENV)
}

/// The workspace binary `name` (and package of that name): `$env` if set, else the one of the
/// same build profile as this executable.
pub fn locate(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("{env}={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables live in `<profile>/deps`.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    if !bin.is_file() {
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("release");
        let flag = if profile == "debug" { "" } else { " --release" };
        bail!(
            "no {name} binary at {}: build it first with `cargo build{flag} -p {name}`",
            bin.display()
        );
    }
    Ok(bin)
}
