//! Releases pods whose network namespace vanished without a `Del` (the node agent died, or missed the pod's
//! deletion). ztunnel's own fd keeps a namespace alive, so "vanished" means: no process other than ztunnel
//! lives in it and no bind mount (`ip netns` / the runtime's `/var/run/netns/...`) refers to it.
//!
//! ztunnel only sees the processes of its own PID namespace and the mounts of its own mount namespace. In a
//! Kubernetes pod without `hostPID` (as deployed) it sees none of the pods' processes or sandbox mounts, so a
//! namespace it cannot see in use is not evidence of anything: a pod is only released once a scan has seen its
//! namespace in use and a later one no longer does ([`NetnsWatch`]). Where ztunnel cannot see the pods, the
//! node agent's `Del` and reconnect snapshot are what release them, as with Istio's ztunnel.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pods::PodManager;

/// How often pods' namespaces are checked.
pub const REAP_INTERVAL: Duration = Duration::from_secs(2);

/// The inode identifying a network namespace.
pub fn netns_inode(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
    Ok(st.st_ino)
}

/// Namespaces that something other than this process holds: `net:[inode]` of other processes and nsfs mounts.
pub fn namespaces_in_use() -> HashSet<u64> {
    let mut used = HashSet::new();
    let me = std::process::id().to_string();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(link) = std::fs::read_link(e.path().join("ns/net"))
                && let Some(ino) = parse_ns_link(&link.to_string_lossy())
            {
                used.insert(ino);
            }
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        used.extend(mounts.lines().filter_map(nsfs_mount_inode));
    }
    used
}

/// `net:[4026532000]` -> 4026532000.
fn parse_ns_link(s: &str) -> Option<u64> {
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The namespace inode of an nsfs mount line of /proc/self/mountinfo (field 4 is `net:[inode]`).
fn nsfs_mount_inode(line: &str) -> Option<u64> {
    let (fields, rest) = line.split_once(" - ")?;
    if !rest.starts_with("nsfs ") {
        return None;
    }
    parse_ns_link(fields.split(' ').nth(3)?)
}

/// What the reaper knows of one pod's network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetnsWatch {
    inode: u64,
    seen_in_use: bool,
}

impl NetnsWatch {
    /// A namespace no scan has looked at yet.
    pub fn new(inode: u64) -> Self {
        Self {
            inode,
            seen_in_use: false,
        }
    }

    /// Records one scan's namespaces in use; true when this namespace was seen in use by an earlier
    /// scan and is not any more (the pod is gone). A namespace never seen in use is never reported.
    pub fn vanished(&mut self, in_use: &HashSet<u64>) -> bool {
        if in_use.contains(&self.inode) {
            self.seen_in_use = true;
            false
        } else {
            self.seen_in_use
        }
    }

    /// Whether a scan has seen the namespace in use, so that its disappearance will be noticed.
    pub fn tracked(&self) -> bool {
        self.seen_in_use
    }
}

/// Periodically releases pods whose namespace is no longer in use.
pub async fn run(pods: Arc<PodManager>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REAP_INTERVAL) => {}
        }
        if pods.is_empty() {
            continue;
        }
        let used = match tokio::task::spawn_blocking(namespaces_in_use).await {
            Ok(u) => u,
            Err(_) => continue,
        };
        for uid in pods.vanished(&used) {
            tracing::warn!(
                uid,
                "pod network namespace vanished without a Del; releasing its listeners"
            );
            // A concurrent Del may have won; either way the pod is gone.
            let _ = pods.del(&uid);
        }
    }
}

/// Inode of the namespace `fd` refers to.
pub fn inode_of(fd: &impl AsFd) -> std::io::Result<u64> {
    netns_inode(fd.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_links_and_nsfs_mounts() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        let line = "612 29 0:4 net:[4026532451] /run/netns/pod-a rw,nosuid,nodev,noexec,relatime shared:312 - nsfs nsfs rw";
        assert_eq!(nsfs_mount_inode(line), Some(4026532451));
        let other = "22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw";
        assert_eq!(nsfs_mount_inode(other), None);
    }

    #[test]
    fn only_a_namespace_seen_in_use_can_vanish() {
        let in_use = HashSet::from([7, 8]);
        let nothing = HashSet::new();

        let mut invisible = NetnsWatch::new(9);
        for _ in 0..3 {
            assert!(!invisible.vanished(&in_use), "never seen: kept");
            assert!(!invisible.vanished(&nothing), "never seen: kept");
        }
        assert!(!invisible.tracked());

        let mut live = NetnsWatch::new(7);
        assert!(!live.vanished(&in_use));
        assert!(live.tracked());
        assert!(!live.vanished(&in_use), "still in use");
        assert!(live.vanished(&nothing), "seen in use, now gone");
    }

    #[test]
    fn our_own_namespace_is_in_use_by_someone() {
        // PID 1 (or any other process) shares the root namespace with this test.
        let fd = std::fs::File::open("/proc/self/ns/net").unwrap();
        let ino = inode_of(&fd).unwrap();
        assert!(namespaces_in_use().contains(&ino));
    }
}
