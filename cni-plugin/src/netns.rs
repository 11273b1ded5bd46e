//! Network namespace helpers: open a namespace as a file descriptor, run code inside it on a
//! dedicated thread (never on the caller's thread), and create/delete named namespaces for tests.
//!
//! A [`Netns`] is only an open file descriptor of `/proc/<pid>/ns/net` or `/var/run/netns/<name>`:
//! holding it keeps the namespace alive, and it is what the handoff protocol passes to ztunnel.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

/// Where `ip netns` keeps its bind-mounted named namespaces.
pub const NAMED_NETNS_DIR: &str = "/var/run/netns";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("cannot open network namespace {path}: {source} (does the pod/namespace still exist?)")]
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `setns(2)` into the namespace failed.
    #[error("cannot enter network namespace {ns}: {source} (needs CAP_SYS_ADMIN)")]
    Enter {
        /// Which namespace.
        ns: String,
        /// The cause.
        source: nix::Error,
    },
    /// The helper thread could not be started.
    #[error("cannot start a thread to enter network namespace {ns}: {source}")]
    Thread {
        /// Which namespace.
        ns: String,
        /// The cause.
        source: io::Error,
    },
    /// The namespace name is not a plain file name.
    #[error("invalid network namespace name {0:?}: use letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// `ip netns add/del` failed.
    #[error("`ip netns {action} {name}` failed: {detail} (is iproute2 installed, are we root?)")]
    IpNetns {
        /// `add` or `del`.
        action: &'static str,
        /// The namespace name.
        name: String,
        /// The tool's stderr or the spawn error.
        detail: String,
    },
}

/// An open network namespace (a file descriptor of an nsfs inode) with a label for messages.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    label: String,
}

impl Netns {
    /// Opens the named namespace `/var/run/netns/<name>` (as created by `ip netns add`).
    pub fn open_named(name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        Self::open_path(Path::new(NAMED_NETNS_DIR).join(name), name.to_string())
    }

    /// Opens the network namespace of process `pid` (`/proc/<pid>/ns/net`).
    pub fn open_pid(pid: u32) -> Result<Self, NetnsError> {
        Self::open_path(
            PathBuf::from(format!("/proc/{pid}/ns/net")),
            format!("pid {pid}"),
        )
    }

    /// Opens the network namespace of the calling thread.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open_path(
            PathBuf::from("/proc/thread-self/ns/net"),
            "current".to_string(),
        )
    }

    /// Opens any nsfs path, e.g. a CNI `CNI_NETNS` path given by the container runtime.
    pub fn open_path(path: PathBuf, label: String) -> Result<Self, NetnsError> {
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Self {
                fd: file.into(),
                label,
            }),
            Err(source) => Err(NetnsError::Open { path, source }),
        }
    }

    /// Wraps a descriptor received from elsewhere (e.g. over the handoff socket).
    pub fn from_fd(fd: OwnedFd, label: String) -> Self {
        Self { fd, label }
    }

    /// Duplicates the descriptor (e.g. to hand a copy to ztunnel while keeping ours).
    pub fn try_clone(&self) -> Result<Self, NetnsError> {
        match self.fd.try_clone() {
            Ok(fd) => Ok(Self {
                fd,
                label: self.label.clone(),
            }),
            Err(source) => Err(NetnsError::Open {
                path: PathBuf::from(format!("<fd of {}>", self.label)),
                source,
            }),
        }
    }

    /// The label used in messages (namespace name, `pid N`, ...).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Gives up the wrapper and returns the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Runs `f` inside this namespace on a dedicated, short-lived thread and returns its result.
    ///
    /// The caller's thread never changes namespace. Sockets created by `f` stay in this namespace
    /// wherever they are used later; processes spawned by `f` start in it. A panic in `f` is
    /// propagated to the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name(format!("netns-{}", self.label))
                .spawn_scoped(scope, || {
                    setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| {
                        NetnsError::Enter {
                            ns: self.label.clone(),
                            source,
                        }
                    })?;
                    Ok(f())
                })
                .map_err(|source| NetnsError::Thread {
                    ns: self.label.clone(),
                    source,
                })?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// A named namespace created with `ip netns add` and deleted with `ip netns del` on drop.
///
/// Meant for tests and local tooling: shelling out to `ip` keeps the namespace visible to
/// `ip netns list` / `ip netns exec` exactly like one made by hand.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    netns: Netns,
}

static UNIQUE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl NamedNetns {
    /// Creates `name` (fails if it exists).
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        run_ip_netns("add", name)?;
        match Netns::open_named(name) {
            Ok(netns) => Ok(Self {
                name: name.to_string(),
                netns,
            }),
            Err(err) => {
                // Do not leak the namespace we just made.
                if let Err(del) = run_ip_netns("del", name) {
                    tracing::warn!(%del, "leaking network namespace");
                }
                Err(err)
            }
        }
    }

    /// Creates a namespace named `<prefix>-<pid>-<counter>`, unique within this machine.
    pub fn create_unique(prefix: &str) -> Result<Self, NetnsError> {
        let n = UNIQUE_COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::create(&format!("{prefix}-{}-{n}", std::process::id()))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        if let Err(err) = run_ip_netns("del", &self.name) {
            tracing::warn!(%err, "leaking network namespace");
        }
    }
}

fn validate_name(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NetnsError::InvalidName(name.to_string()))
    }
}

fn run_ip_netns(action: &'static str, name: &str) -> Result<(), NetnsError> {
    let err = |detail: String| NetnsError::IpNetns {
        action,
        name: name.to_string(),
        detail,
    };
    let out = Command::new("ip")
        .args(["netns", action, name])
        .output()
        .map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

#[cfg(test)]
mod tests;
