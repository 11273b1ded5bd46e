//! Finding the network namespace of a pod that never went through our CNI ADD (it started
//! before the agent was installed): scan the named namespaces (`/var/run/netns`) and every
//! process's `<proc root>/<pid>/ns/net`, once per distinct namespace, and pick the one that has
//! the pod's IP on an interface other than loopback. The node's own namespace is skipped. The proc
//! root is the host's `/proc`: in the DaemonSet, which has no `hostPID`, its `/host/proc` mount
//! (the agent's own `/proc` would show only the agent's processes).

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::netns::{NAMED_NETNS_DIR, Netns};

/// A namespace found for a pod: where to open it again, and the open descriptor.
#[derive(Debug)]
pub struct Found {
    /// A path that stays valid while the pod lives (named namespace preferred, else the
    /// `<proc root>/<pid>/ns/net` of a process inside it).
    pub path: PathBuf,
    /// The open namespace.
    pub netns: Netns,
}

/// Searches for the namespace holding one of `ips` among the named namespaces and those of the
/// processes under `proc_root`; `None` if no namespace has them.
pub fn find_netns(ips: &[IpAddr], node: &Netns, proc_root: &Path) -> Option<Found> {
    if ips.is_empty() {
        return None;
    }
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    if let Ok(me) = std::fs::metadata(format!("/proc/self/fd/{}", fd_number(node))) {
        seen.insert((me.dev(), me.ino()));
    }
    let named = std::fs::read_dir(NAMED_NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    let procs = std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"));
    for path in named.chain(procs) {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(netns) = Netns::open_path(path.clone(), path.display().to_string()) else {
            continue;
        };
        if holds_any(&netns, ips) {
            return Some(Found { path, netns });
        }
    }
    None
}

/// A namespace path the runtime passed in CNI_NETNS, as this agent sees it: a `/proc/<pid>/ns/net`
/// path (runtimes that do not name namespaces) is in the host's `/proc`, which the agent sees at
/// `proc_root`. Other paths (`/var/run/netns/...`) are unchanged.
pub fn agent_view(path: &Path, proc_root: &Path) -> PathBuf {
    match path.strip_prefix("/proc") {
        Ok(rest) if proc_root != Path::new("/proc") => proc_root.join(rest),
        _ => path.to_path_buf(),
    }
}

fn fd_number(ns: &Netns) -> i32 {
    use std::os::fd::{AsFd, AsRawFd};
    ns.as_fd().as_raw_fd()
}

/// Whether a non-loopback interface in `netns` carries one of `ips`.
fn holds_any(netns: &Netns, ips: &[IpAddr]) -> bool {
    netns
        .run(|| {
            let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
                return false;
            };
            addrs
                .filter(|a| a.interface_name != "lo")
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .any(|ip| ips.contains(&ip))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::netns::NamedNetns;

    #[test]
    fn finds_a_namespace_by_the_ip_on_its_interface() {
        let ns = NamedNetns::create_unique("discover").expect("netns");
        let run = |args: &[&str]| {
            crate::exec::run_in(ns.netns(), "ip", args, None).expect("ip");
        };
        // A veth pair inside the namespace (nothing in the root namespace).
        run(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
        run(&["addr", "add", "10.250.7.9/32", "dev", "d0"]);
        run(&["link", "set", "d0", "up"]);
        let node = Netns::current().expect("current");
        let ip: IpAddr = "10.250.7.9".parse().expect("ip");
        let proc = Path::new("/proc");
        let found = find_netns(&[ip], &node, proc).expect("found");
        assert_eq!(found.path, Path::new(NAMED_NETNS_DIR).join(ns.name()));
        let nobody: IpAddr = "10.250.7.10".parse().expect("ip");
        assert!(find_netns(&[nobody], &node, proc).is_none());
        assert!(find_netns(&[], &node, proc).is_none());
    }

    #[test]
    fn runtime_proc_paths_are_read_through_the_proc_root() {
        let host = Path::new("/host/proc");
        assert_eq!(
            agent_view(Path::new("/proc/4242/ns/net"), host),
            Path::new("/host/proc/4242/ns/net")
        );
        assert_eq!(
            agent_view(Path::new("/var/run/netns/cni-1"), host),
            Path::new("/var/run/netns/cni-1")
        );
        assert_eq!(
            agent_view(Path::new("/proc/4242/ns/net"), Path::new("/proc")),
            Path::new("/proc/4242/ns/net")
        );
        assert_eq!(
            agent_view(Path::new("/procfs/x"), host),
            Path::new("/procfs/x"),
            "only the /proc directory itself"
        );
    }

    #[test]
    fn finds_an_unnamed_namespace_through_the_given_proc_root_only() {
        // A process in a namespace of its own with no name: only its /proc entry leads there.
        let mut child = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c"])
            .arg(
                "ip link add d0 type veth peer name d1 && ip addr add 10.250.8.9/32 dev d0 \
                 && ip link set d0 up && echo up && exec sleep 60",
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        let node = Netns::current().expect("current");
        let ip: IpAddr = "10.250.8.9".parse().expect("ip");
        let empty = tempfile::tempdir().expect("tempdir");
        let through_empty_root = find_netns(&[ip], &node, empty.path());
        let through_proc = find_netns(&[ip], &node, Path::new("/proc"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(line.trim(), "up", "the namespace was set up");
        assert!(
            through_empty_root.is_none(),
            "a proc root without the process must not find it"
        );
        let found = through_proc.expect("found through /proc");
        assert!(
            found.path.starts_with("/proc") && found.path.ends_with("ns/net"),
            "{}",
            found.path.display()
        );
    }
}
