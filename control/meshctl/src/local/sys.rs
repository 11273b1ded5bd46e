//! System plumbing of local mode: running `ip`, finding dependencies and our binaries, checking
//! that we may change the network, and the namespaces and processes of a cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Environment variable naming the directory of the mesh binaries (default: `meshctl`'s own).
pub const BIN_DIR_ENV: &str = "MESHCTL_BIN_DIR";
/// Directory of the standard CNI plugins (Debian's containernetworking-plugins).
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";
/// Binaries of the mesh that local mode runs.
pub const MESH_BINARIES: [&str; 5] = [
    "mesh-control",
    "ztunnel",
    "mesh-cni-agent",
    "mesh-cni",
    "waypoint",
];

/// Errors of the system plumbing.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// Not root.
    #[error(
        "meshctl local needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces; run it with sudo"
    )]
    NotRoot,
    /// A tool is not on PATH.
    #[error("`{tool}` is not on PATH; install it (Debian: apt-get install {package})")]
    MissingTool {
        /// The tool.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A CNI plugin is missing.
    #[error(
        "CNI plugin {0} is missing; install it (Debian: apt-get install containernetworking-plugins)"
    )]
    MissingCniPlugin(PathBuf),
    /// A mesh binary is missing.
    #[error(
        "mesh binary {path} is missing; build it with `cargo build --bin {name}` or point {BIN_DIR_ENV} at the directory holding it"
    )]
    MissingBinary {
        /// The binary.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A command could not run or failed.
    #[error("`{cmd}` failed: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// stderr or the spawn error.
        detail: String,
    },
}

/// Runs `program args` to completion; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, SysError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SysError::Command {
            cmd: cmd.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SysError::Command {
            cmd,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs several `ip` commands (without the leading `ip`) in namespace `ns` in one batch.
pub fn ip_batch(ns: &str, lines: &[String]) -> Result<(), SysError> {
    use std::io::Write;
    let cmd = format!("ip -n {ns} -batch -");
    let fail = |detail: String| SysError::Command {
        cmd: cmd.clone(),
        detail,
    };
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.join("\n").as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
}

/// Whether `tool` is an executable file in one of `PATH`'s directories.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// The directory holding the mesh binaries: `$MESHCTL_BIN_DIR`, else `meshctl`'s own directory.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Checks root, `ip`, `nft`, the standard CNI plugins and the mesh binaries.
pub fn preflight(bin_dir: &Path) -> Result<(), SysError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SysError::NotRoot);
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if !on_path(tool) {
            return Err(SysError::MissingTool { tool, package });
        }
    }
    for plugin in ["bridge", "host-local"] {
        let p = Path::new(CNI_PLUGIN_DIR).join(plugin);
        if !p.is_file() {
            return Err(SysError::MissingCniPlugin(p));
        }
    }
    for name in MESH_BINARIES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            return Err(SysError::MissingBinary { name, path });
        }
    }
    Ok(())
}

/// Names of all named network namespaces (`ip netns list`).
pub fn netns_list() -> Vec<String> {
    run("ip", &["netns", "list"])
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of the processes inside namespace `ns`.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    run("ip", &["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether process `pid` runs executable `exe` (so it is still the process we started).
pub fn runs(pid: u32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| {
        p == exe || p.to_string_lossy().trim_end_matches(" (deleted)") == exe.to_string_lossy()
    })
}

/// Sends SIGTERM to `pids`, waits up to `grace` for them to exit, then SIGKILLs the rest.
pub fn terminate(pids: &[u32], grace: Duration) {
    let signal = |sig, pid: u32| {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), sig);
        }
    };
    for &pid in pids {
        signal(Signal::SIGTERM, pid);
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids.iter().filter(|&&p| alive(p)) {
        signal(Signal::SIGKILL, pid);
    }
    // SIGKILL is not instant: wait until they are gone so that callers see a clean state.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills every process inside namespace `ns` and deletes it.
pub fn destroy_netns(ns: &str) -> Result<(), SysError> {
    for _ in 0..100 {
        let pids = netns_pids(ns);
        if pids.is_empty() {
            break;
        }
        terminate(&pids, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
    }
    run("ip", &["netns", "del", ns]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_on_path_and_not_made_up_ones() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-tool-meshctl-xyz"));
    }

    #[test]
    fn our_own_process_is_alive_and_runs_our_executable() {
        let me = std::process::id();
        assert!(alive(me));
        let exe = std::env::current_exe().unwrap();
        assert!(runs(me, &exe));
        assert!(!runs(me, Path::new("/bin/true")));
    }

    #[test]
    fn a_missing_mesh_binary_names_the_build_command() {
        if !nix::unistd::geteuid().is_root() {
            assert!(matches!(
                preflight(Path::new("/nonexistent")),
                Err(SysError::NotRoot)
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        match preflight(dir.path()) {
            Err(e @ SysError::MissingBinary { .. }) => {
                assert!(
                    e.to_string().contains("cargo build --bin mesh-control"),
                    "{e}"
                )
            }
            // On machines without the CNI plugins or nft the earlier check fires first.
            Err(SysError::MissingCniPlugin(_) | SysError::MissingTool { .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
