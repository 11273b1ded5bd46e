//! `meshctl local up`: nodes, fabric, control, and a node agent and ztunnel per node.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mesh_cni::agent::LocalState;

use super::components::{self, Spec, Started, file_contains, http_status};
use super::network::{self, node_ip, node_name, node_netns};
use super::state::ClusterState;
use super::{LocalError, MAX_NODES, UpOptions, cluster_id, down, io, sys};

/// control's gRPC port (DESIGN.md 3).
pub const CONTROL_PORT: u16 = 15012;
/// ztunnel's readiness port (DESIGN.md 3).
pub const READY_PORT: u16 = 15021;
/// The line control logs once it serves.
const CONTROL_SERVING: &str = "mesh-control serving";
/// The mesh root control generates at its first start (ztunnels verify control with it).
const ROOT_CERT: &str = "control/ca/root-cert.pem";
/// The line the pod runtime logs once it runs.
const RUNTIME_STARTED: &str = "runtime of cluster";
/// The local-mode cluster-state file the node agents watch (pods and namespaces).
pub const CLUSTER_FILE: &str = "cluster.yaml";

/// What `up` made.
#[derive(Debug)]
pub struct UpReport {
    /// The state directory.
    pub state: PathBuf,
    /// The final state.
    pub cluster: ClusterState,
}

impl fmt::Display for UpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "local cluster {} is up with {} nodes (state {})",
            self.cluster.id,
            self.cluster.nodes,
            self.state.display()
        )?;
        for ns in &self.cluster.netns {
            writeln!(f, "  netns   {ns}")?;
        }
        for p in &self.cluster.processes {
            writeln!(
                f,
                "  process {:<16} pid {:<7} log {}",
                p.name,
                p.pid,
                p.log.display()
            )?;
        }
        write!(
            f,
            "run `meshctl local down --state {}` to remove it",
            self.state.display()
        )
    }
}

/// Builds the cluster; on any failure removes what it made and returns the error.
pub fn up(opts: &UpOptions) -> Result<UpReport, LocalError> {
    if !(1..=MAX_NODES).contains(&opts.nodes) {
        return Err(LocalError::NodeCount(opts.nodes));
    }
    let bin_dir = sys::bin_dir();
    sys::preflight(&bin_dir)?;
    let dir = std::path::absolute(&opts.state).map_err(io("resolve the state directory"))?;
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    if ClusterState::load(&dir)?.is_some() {
        return Err(LocalError::AlreadyUp(dir));
    }
    // Leftovers of a cluster whose state file is gone (a crashed down) would clash on names.
    down::sweep_prefix(&cluster_id(&dir))?;
    let mut b = Builder {
        dir: dir.clone(),
        bin_dir,
        state: ClusterState {
            id: cluster_id(&dir),
            nodes: opts.nodes,
            path_env: std::env::var("PATH").unwrap_or_default(),
            ..ClusterState::default()
        },
        children: Vec::new(),
    };
    b.state.save(&dir)?;
    match b.build() {
        Ok(()) => Ok(UpReport {
            state: dir,
            cluster: b.state,
        }),
        Err(e) => {
            let _ = down::down(&super::DownOptions { state: dir });
            for c in &mut b.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            Err(e)
        }
    }
}

struct Builder {
    dir: PathBuf,
    bin_dir: PathBuf,
    state: ClusterState,
    children: Vec<std::process::Child>,
}

impl Builder {
    fn build(&mut self) -> Result<(), LocalError> {
        let (id, count) = (self.state.id.clone(), self.state.nodes);
        let fabric = network::fabric_netns(&id);
        self.netns(&fabric)?;
        network::setup_fabric(&fabric)?;
        for n in 1..=count {
            let ns = node_netns(&id, n);
            self.netns(&ns)?;
            network::setup_node(&fabric, &ns, n, count)?;
        }
        self.prepare_dirs()?;
        self.start_control()?;
        self.start_dns()?;
        for n in 1..=count {
            self.start_agent(n)?;
            self.start_ztunnel(n)?;
        }
        self.start_runtime()?;
        self.state.ready = true;
        self.state.save(&self.dir)?;
        Ok(())
    }

    fn netns(&mut self, name: &str) -> Result<(), LocalError> {
        let (state, dir) = (&mut self.state, &self.dir);
        network::create_netns(name, &mut |n| {
            state.netns.push(n.to_owned());
            state.save(dir).map_err(LocalError::from)
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn prepare_dirs(&self) -> Result<(), LocalError> {
        for d in ["control/config", "control/ca", "logs"] {
            let p = self.path(d);
            std::fs::create_dir_all(&p).map_err(io(format!("create {}", p.display())))?;
        }
        for n in 1..=self.state.nodes {
            let p = self.path(&node_name(n));
            std::fs::create_dir_all(&p).map_err(io(format!("create {}", p.display())))?;
        }
        let key_path = self.path("control/token.key");
        let mut key = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").map_err(io("open /dev/urandom"))?,
            &mut key,
        )
        .map_err(io("read /dev/urandom"))?;
        std::fs::write(&key_path, key).map_err(io(format!("write {}", key_path.display())))?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("chmod {}", key_path.display())))?;
        super::cni::prepare(&self.dir, self.state.nodes, &self.bin_dir.join("mesh-cni"))?;
        let cluster = self.path(CLUSTER_FILE);
        LocalState::default()
            .write(&cluster)
            .map_err(io(format!("write {}", cluster.display())))
    }

    fn start(&mut self, spec: Spec<'_>) -> Result<Started, LocalError> {
        let started = components::spawn(spec, &self.path("logs"))?;
        self.state.processes.push(started.record.clone());
        self.state.save(&self.dir)?;
        Ok(started)
    }

    fn keep(&mut self, started: Started) {
        self.children.push(started.child);
    }

    fn start_control(&mut self) -> Result<(), LocalError> {
        let ns = node_netns(&self.state.id, 1);
        let args = vec![
            "serve".into(),
            "--config-dir".into(),
            arg(&self.path("control/config")),
            "--ca-dir".into(),
            arg(&self.path("control/ca")),
            "--token-key".into(),
            arg(&self.path("control/token.key")),
            "--status-dir".into(),
            arg(&self.path(super::routes::STATUS_DIR)),
            "--listen".into(),
            format!("{}:{CONTROL_PORT}", node_ip(1)),
            "--poll".into(),
            "0.1".into(),
        ];
        let spec = Spec {
            name: "control".into(),
            netns: &ns,
            exe: self.bin_dir.join("mesh-control"),
            args,
        };
        let mut started = self.start(spec)?;
        let log = started.record.log.clone();
        let root = self.path(ROOT_CERT);
        let r = components::wait_ready(&mut started, "serving its gRPC port", || {
            file_contains(&log, CONTROL_SERVING) && root.is_file()
        });
        self.keep(started);
        r
    }

    /// The pod runtime (`meshctl local runtime`, see `runtime.rs`): started in the root
    /// namespaces, it moves itself into node-1's network namespace.
    fn start_runtime(&mut self) -> Result<(), LocalError> {
        let exe = std::env::current_exe().map_err(io("find the meshctl executable"))?;
        let spec = Spec {
            name: "runtime".into(),
            netns: "",
            exe,
            args: vec![
                "local".into(),
                "runtime".into(),
                "--state".into(),
                arg(&self.dir),
            ],
        };
        let mut started = self.start(spec)?;
        let log = started.record.log.clone();
        let r = components::wait_ready(&mut started, "its first tick", || {
            file_contains(&log, RUNTIME_STARTED)
        });
        self.keep(started);
        r
    }

    /// The cluster DNS (`meshctl local dns`) in node-1's netns on [`super::dns::DNS_ADDR`]:53.
    fn start_dns(&mut self) -> Result<(), LocalError> {
        let ns = node_netns(&self.state.id, 1);
        let exe = std::env::current_exe().map_err(io("find meshctl's own executable"))?;
        let args = vec![
            "local".into(),
            "dns".into(),
            "--state".into(),
            arg(&self.dir),
        ];
        let spec = Spec {
            name: "dns".into(),
            netns: &ns,
            exe,
            args,
        };
        let mut started = self.start(spec)?;
        let log = started.record.log.clone();
        let r = components::wait_ready(&mut started, "serving DNS", || {
            file_contains(&log, super::dns::server::SERVING)
        });
        self.keep(started);
        r
    }

    fn start_agent(&mut self, n: u8) -> Result<(), LocalError> {
        let ns = node_netns(&self.state.id, n);
        let node_dir = self.path(&node_name(n));
        let sock = node_dir.join("cni.sock");
        let args = vec![
            "--node".into(),
            node_name(n),
            "--source".into(),
            "local".into(),
            "--local-state".into(),
            arg(&self.path(CLUSTER_FILE)),
            "--state-dir".into(),
            arg(&node_dir),
            "--local-poll-ms".into(),
            "50".into(),
        ];
        let spec = Spec {
            name: format!("agent-{}", node_name(n)),
            netns: &ns,
            exe: self.bin_dir.join("mesh-cni-agent"),
            args,
        };
        let mut started = self.start(spec)?;
        let r = components::wait_ready(&mut started, "CNI socket", || sock.exists());
        self.keep(started);
        r
    }

    fn token(&self, n: u8) -> Result<PathBuf, LocalError> {
        let exe = self.bin_dir.join("mesh-control");
        let key = arg(&self.path("control/token.key"));
        let node = node_name(n);
        let token = sys::run(
            &arg(&exe),
            &[
                "token",
                "--token-key",
                &key,
                "--service-account",
                "istio-system/ztunnel",
                "--node",
                &node,
            ],
        )?;
        let path = self.path(&format!("control/token-{node}"));
        std::fs::write(&path, token).map_err(io(format!("write {}", path.display())))?;
        Ok(path)
    }

    fn start_ztunnel(&mut self, n: u8) -> Result<(), LocalError> {
        let ns = node_netns(&self.state.id, n);
        let token = self.token(n)?;
        let args = vec![
            "--node".into(),
            node_name(n),
            "--control".into(),
            format!("{}:{CONTROL_PORT}", node_ip(1)),
            "--token-file".into(),
            arg(&token),
            "--control-ca".into(),
            arg(&self.path(ROOT_CERT)),
            "--handoff-socket".into(),
            arg(&self.path(&node_name(n)).join("ztunnel.sock")),
            // Seconds open tunnels get on shutdown: short, so that `down` is quick.
            "--drain".into(),
            "1".into(),
        ];
        let spec = Spec {
            name: format!("ztunnel-{}", node_name(n)),
            netns: &ns,
            exe: self.bin_dir.join("ztunnel"),
            args,
        };
        let mut started = self.start(spec)?;
        let ready = SocketAddr::from(([127, 0, 0, 1], READY_PORT));
        let r = components::wait_ready(&mut started, "GET /healthz/ready on 15021", || {
            http_status(&ns, ready, "/healthz/ready") == 200
        });
        self.keep(started);
        r
    }
}

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
