//! Named network namespaces (`ip netns`) as RAII guards.
//!
//! Dropping a [`Netns`] kills every process still inside it (`ip netns pids`) and deletes it.
//! Nothing is configured in the root namespace: the only trace there is the name under
//! `/run/netns` while the guard lives.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd::{self, CmdError, CmdOutput, DEFAULT_TIMEOUT};
use crate::names;
use crate::process::{Process, ProcessError};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of managing a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `ip netns add` failed.
    #[error("cannot create network namespace {name} (are we root with CAP_SYS_ADMIN?): {source}")]
    Create {
        /// The namespace.
        name: String,
        /// The failed command.
        source: CmdError,
    },
    /// A command inside the namespace failed.
    #[error("in network namespace {name}: {source}")]
    Command {
        /// The namespace.
        name: String,
        /// The failed command.
        source: CmdError,
    },
    /// A process could not be started inside the namespace.
    #[error("in network namespace {name}: {source}")]
    Spawn {
        /// The namespace.
        name: String,
        /// The failure.
        source: ProcessError,
    },
    /// Nothing listened on the port in time.
    #[error("nothing listens on TCP port {port} in network namespace {name} after {waited:?}")]
    NotListening {
        /// The namespace.
        name: String,
        /// The port.
        port: u16,
        /// How long we waited.
        waited: Duration,
    },
}

/// A named network namespace, deleted (with the processes inside) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named [`names::netns_name`]`(tag)` with its loopback up.
    pub fn new(tag: &str) -> Result<Netns, NetnsError> {
        let name = names::netns_name(tag);
        cmd::run_ok(
            Command::new("ip").args(["netns", "add", &name]),
            None,
            DEFAULT_TIMEOUT,
        )
        .map_err(|source| NetnsError::Create {
            name: name.clone(),
            source,
        })?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (`/run/netns/<name>`), e.g. to open and pass as an fd.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    fn err(&self, source: CmdError) -> NetnsError {
        NetnsError::Command {
            name: self.name.clone(),
            source,
        }
    }

    /// A command that runs `program` inside this namespace (`ip netns exec <name> program`), to
    /// which the caller adds arguments and environment. `ip netns exec` replaces itself with the
    /// program, so the pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside the namespace to completion (deadline `timeout`). A non-zero
    /// exit is returned in the output, not as an error.
    pub fn run_timeout<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
        timeout: Duration,
    ) -> Result<CmdOutput, NetnsError> {
        cmd::run(self.command(program).args(args), None, timeout).map_err(|e| self.err(e))
    }

    /// Runs `program args` inside the namespace and returns its stdout; a non-zero exit is an
    /// error carrying stderr.
    pub fn run_ok<S: AsRef<OsStr>>(
        &self,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<String, NetnsError> {
        cmd::run_ok(self.command(program).args(args), None, DEFAULT_TIMEOUT)
            .map_err(|e| self.err(e))
    }

    /// Runs `ip -n <name> args...` and returns its stdout.
    pub fn ip<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, NetnsError> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        cmd::run_ok(&mut c, None, DEFAULT_TIMEOUT).map_err(|e| self.err(e))
    }

    /// Runs several `ip` commands (one per line, without the leading `ip`) in one `ip -batch`,
    /// stopping at the first failure.
    pub fn ip_batch<S: AsRef<str>>(&self, lines: &[S]) -> Result<(), NetnsError> {
        let mut input = String::new();
        for l in lines {
            input.push_str(l.as_ref());
            input.push('\n');
        }
        let mut c = Command::new("ip");
        c.args(["-n", &self.name, "-batch", "-"]);
        cmd::run_ok(&mut c, Some(input.as_bytes()), DEFAULT_TIMEOUT).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets a sysctl inside this namespace only (e.g. `net.ipv4.ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        self.run_ok("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Starts a long-running `program args` inside the namespace; see [`Process`].
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        label: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Process, NetnsError> {
        let mut c = self.command(program);
        c.args(args);
        self.spawn_command(label, c)
    }

    /// Starts a command made with [`Netns::command`] as a [`Process`].
    pub fn spawn_command(&self, label: &str, cmd: Command) -> Result<Process, NetnsError> {
        Process::start(cmd, label).map_err(|source| NetnsError::Spawn {
            name: self.name.clone(),
            source,
        })
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<u32> {
        pids_of(&self.name)
    }

    /// Whether some socket listens on TCP `port` inside the namespace.
    pub fn is_listening(&self, port: u16) -> Result<bool, NetnsError> {
        let out = self.run_ok("ss", &["-Hltn", &format!("sport = :{port}")])?;
        Ok(!out.trim().is_empty())
    }

    /// Waits until some socket listens on TCP `port` inside the namespace.
    pub fn wait_listening(&self, port: u16, timeout: Duration) -> Result<(), NetnsError> {
        let start = Instant::now();
        while !self.is_listening(port)? {
            if start.elapsed() >= timeout {
                return Err(NetnsError::NotListening {
                    name: self.name.clone(),
                    port,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn pids_of(name: &str) -> Vec<u32> {
    cmd::run_ok(
        Command::new("ip").args(["netns", "pids", name]),
        None,
        DEFAULT_TIMEOUT,
    )
    .map(|out| {
        out.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// Kills every process inside namespace `name`, then deletes it. Errors are printed, not
/// returned: this runs from `Drop`.
fn destroy(name: &str) {
    for _ in 0..50 {
        let pids = pids_of(name);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = cmd::run_ok(
        Command::new("ip").args(["netns", "del", name]),
        None,
        DEFAULT_TIMEOUT,
    ) {
        eprintln!("mesh-testbed: cannot delete network namespace {name}: {e}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

/// Names of all named network namespaces (`ip netns list`).
pub fn list() -> Vec<String> {
    cmd::run_ok(
        Command::new("ip").args(["netns", "list"]),
        None,
        DEFAULT_TIMEOUT,
    )
    .map(|out| {
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Deletes testbed namespaces whose creating test process no longer exists (it was killed
/// before its guards could run). Returns the names it deleted.
pub fn sweep_stale() -> Vec<String> {
    let mut swept = Vec::new();
    for name in list() {
        let Some(pid) = names::netns_owner_pid(&name) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        destroy(&name);
        swept.push(name);
    }
    swept
}
