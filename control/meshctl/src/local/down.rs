//! `meshctl local down`: stops every recorded process, deletes every namespace of the cluster
//! (recorded or found by the cluster's name prefix, so also after a crash of `up` or of any
//! component) and removes the runtime files. Logs stay in `<state>/logs`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::network::netns_prefix;
use super::state::ClusterState;
use super::up::CLUSTER_FILE;
use super::{DownOptions, LocalError, cluster_id, io, sys};

/// How long components get to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    /// The state directory.
    pub state: PathBuf,
    /// Processes stopped (name, pid).
    pub stopped: Vec<(String, u32)>,
    /// Namespaces deleted.
    pub netns: Vec<String>,
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stopped.is_empty() && self.netns.is_empty() {
            return write!(f, "nothing to remove for state {}", self.state.display());
        }
        for (name, pid) in &self.stopped {
            writeln!(f, "  stopped {name} (pid {pid})")?;
        }
        for ns in &self.netns {
            writeln!(f, "  deleted netns {ns}")?;
        }
        write!(
            f,
            "local cluster of {} is down (logs kept in its logs/)",
            self.state.display()
        )
    }
}

/// Removes the cluster of `opts.state`; see the module documentation.
pub fn down(opts: &DownOptions) -> Result<DownReport, LocalError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(sys::SysError::NotRoot.into());
    }
    let dir = std::path::absolute(&opts.state).map_err(io("resolve the state directory"))?;
    let state = ClusterState::load(&dir)?;
    let id = state
        .as_ref()
        .map_or_else(|| cluster_id(&dir), |s| s.id.clone());
    let mut report = DownReport {
        state: dir.clone(),
        ..DownReport::default()
    };
    if let Some(state) = &state {
        let ours: Vec<_> = state
            .processes
            .iter()
            .filter(|p| sys::alive(p.pid) && sys::runs(p.pid, &p.exe))
            .collect();
        let pids: Vec<u32> = ours.iter().map(|p| p.pid).collect();
        sys::terminate(&pids, STOP_GRACE);
        report.stopped = ours.iter().map(|p| (p.name.clone(), p.pid)).collect();
        // Nodes before the fabric: a veth pair goes with whichever end is deleted first.
        for ns in state.netns.iter().rev() {
            if sys::netns_list().contains(ns) {
                sys::destroy_netns(ns)?;
                report.netns.push(ns.clone());
            }
        }
    }
    report.netns.extend(sweep_prefix(&id)?);
    remove_etc_netns(&id)?;
    let left: Vec<String> = sys::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&netns_prefix(&id)))
        .collect();
    if !left.is_empty() {
        return Err(LocalError::Leftovers(left.join(", ")));
    }
    // Pods' resolv.conf dirs (named after their netns, so the prefix finds them all).
    super::dns::server::sweep_etc_netns(&netns_prefix(&id))
        .map_err(|e| LocalError::Leftovers(e.to_string()))?;
    remove_runtime_files(&dir, state.as_ref())?;
    Ok(report)
}

/// Removes `/etc/netns/<netns>/` of every namespace of cluster `id` (per-pod `resolv.conf`
/// that `ip netns exec` bind-mounts).
fn remove_etc_netns(id: &str) -> Result<(), LocalError> {
    let prefix = netns_prefix(id);
    let Ok(entries) = std::fs::read_dir("/etc/netns") else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let p = e.path();
            std::fs::remove_dir_all(&p).map_err(io(format!("remove {}", p.display())))?;
        }
    }
    Ok(())
}

/// Deletes every namespace named with cluster `id`'s prefix (and the processes inside).
pub fn sweep_prefix(id: &str) -> Result<Vec<String>, LocalError> {
    let prefix = netns_prefix(id);
    let mut swept = Vec::new();
    for ns in sys::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
    {
        sys::destroy_netns(&ns)?;
        swept.push(ns);
    }
    Ok(swept)
}

fn remove_runtime_files(
    dir: &std::path::Path,
    state: Option<&ClusterState>,
) -> Result<(), LocalError> {
    let nodes = state.map_or(0, |s| s.nodes);
    let mut paths: Vec<PathBuf> = vec![
        dir.join("control"),
        dir.join("cni"),
        dir.join(CLUSTER_FILE),
        dir.join(super::store::STORE_DIR),
        dir.join("dns"),
    ];
    paths.extend((1..=nodes).map(|n| dir.join(format!("node-{n}"))));
    for p in paths {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("remove {}", p.display()))(e)),
        }
    }
    // Last: without the state file the directory is free for the next `up`.
    match std::fs::remove_file(ClusterState::file(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove the state file")(e)),
        _ => Ok(()),
    }
}
