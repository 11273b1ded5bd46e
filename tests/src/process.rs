//! Long-running processes (servers, proxies, captures) as RAII guards.
//!
//! A [`Process`] runs in its own process group; dropping it terminates the whole group (SIGTERM,
//! then SIGKILL after [`STOP_GRACE`]). Its stdout and stderr go to files under [`log_dir`]; they
//! are removed when the guard drops normally and kept (with their tails printed) when the thread
//! is panicking, so a failing test shows what its processes said.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::cmd::describe;
use crate::names;

/// How long a process gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Environment variable naming the directory for process logs.
pub const LOG_DIR_ENV: &str = "MESH_TESTBED_LOG_DIR";
/// Environment variable that, when set, keeps process logs even after a passing test.
pub const KEEP_LOGS_ENV: &str = "MESH_TESTBED_KEEP_LOGS";

const POLL: Duration = Duration::from_millis(10);
/// How long [`Process::stdout_when`] waits for a log record.
pub const LOG_WAIT: Duration = Duration::from_secs(10);
const LOG_POLL: Duration = Duration::from_millis(20);
const TAIL_LINES: usize = 30;

/// Errors of starting and supervising a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log directory or files could not be created.
    #[error("cannot create log file {path}: {source} (check {LOG_DIR_ENV} and free space)")]
    Log {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The program could not be started.
    #[error("cannot start `{cmd}`: {source} (is the program built/installed?)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why spawning failed.
        source: std::io::Error,
    },
    /// Waiting on the process failed.
    #[error("cannot wait for {label}: {source}")]
    Wait {
        /// The process label.
        label: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The process did not exit or print what was expected in time.
    #[error("{label}: {what} not seen within {after:?}; stderr tail:\n{stderr}")]
    Timeout {
        /// The process label.
        label: String,
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
        /// The end of its stderr.
        stderr: String,
    },
    /// The process exited while we waited for output from it.
    #[error("{label} exited with {status} before printing {needle:?}; stderr tail:\n{stderr}")]
    Exited {
        /// The process label.
        label: String,
        /// Its exit status.
        status: ExitStatus,
        /// The text that was awaited.
        needle: String,
        /// The end of its stderr.
        stderr: String,
    },
}

/// The directory for process logs: `$MESH_TESTBED_LOG_DIR`, or `<tmp>/mesh-testbed-logs`.
pub fn log_dir() -> PathBuf {
    std::env::var_os(LOG_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("mesh-testbed-logs"))
}

/// A running process, killed with its process group when dropped.
#[derive(Debug)]
pub struct Process {
    label: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

fn create(path: &Path) -> Result<File, ProcessError> {
    File::create(path).map_err(|source| ProcessError::Log {
        path: path.to_owned(),
        source,
    })
}

impl Process {
    /// Starts `cmd` in a new process group with stdin closed and stdout/stderr in log files.
    /// `label` names the logs and error messages.
    pub fn start(mut cmd: Command, label: &str) -> Result<Process, ProcessError> {
        let dir = log_dir();
        std::fs::create_dir_all(&dir).map_err(|source| ProcessError::Log {
            path: dir.clone(),
            source,
        })?;
        let label = names::unique(label);
        let stdout_path = dir.join(format!("{label}.stdout"));
        let stderr_path = dir.join(format!("{label}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout_path)?)
            .stderr(create(&stderr_path)?)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            cmd: describe(&cmd),
            source,
        })?;
        Ok(Process {
            label,
            child,
            status: None,
            stdout_path,
            stderr_path,
        })
    }

    /// The unique label of this process (also the stem of its log files).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// Path of the stdout log.
    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// Path of the stderr log.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read(&self.stdout_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Stdout as soon as `done` holds for it, or as it stands after [`LOG_WAIT`] (for the
    /// caller's assertion message). The proxies write their logs in batches, a fraction of a
    /// second after the event, so a record is waited for rather than expected at once.
    pub fn stdout_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            let out = self.stdout();
            if done(&out) || Instant::now() >= deadline {
                return out;
            }
            std::thread::sleep(LOG_POLL);
        }
    }

    /// [`Process::stdout_when`] it contains `needle`.
    pub fn stdout_containing(&self, needle: &str) -> String {
        self.stdout_when(|out| out.contains(needle))
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn stderr_tail(&self) -> String {
        tail(&self.stderr(), TAIL_LINES)
    }

    /// Sends `signal` to the process only (not its group).
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        kill(self.pgid(), signal)
    }

    /// Returns the exit status if the process has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| ProcessError::Wait {
                label: self.label.clone(),
                source,
            })?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Timeout {
                    label: self.label.clone(),
                    what: "exit".into(),
                    after: timeout,
                    stderr: self.stderr_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until stdout or stderr contains `needle` (e.g. "listening on"). Fails early, with
    /// the stderr tail, if the process exits first.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<(), ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(ProcessError::Exited {
                    label: self.label.clone(),
                    status,
                    needle: needle.into(),
                    stderr: self.stderr_tail(),
                });
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Timeout {
                    label: self.label.clone(),
                    what: format!("output {needle:?}"),
                    after: timeout,
                    stderr: self.stderr_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the process group: `signal` (usually SIGTERM or SIGINT), then SIGKILL after
    /// `grace`. Returns the exit status of the main process.
    pub fn stop_with(
        &mut self,
        signal: Signal,
        grace: Duration,
    ) -> Result<ExitStatus, ProcessError> {
        if self.try_wait()?.is_none() {
            let _ = killpg(self.pgid(), signal);
            if self.wait_timeout(grace).is_err() {
                let _ = killpg(self.pgid(), Signal::SIGKILL);
            }
        }
        let status = match self.status {
            Some(status) => status,
            None => self.child.wait().map_err(|source| ProcessError::Wait {
                label: self.label.clone(),
                source,
            })?,
        };
        self.status = Some(status);
        // Children left behind by the main process belong to the same group.
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        Ok(status)
    }

    /// Stops the process group with SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) -> Result<ExitStatus, ProcessError> {
        self.stop_with(Signal::SIGTERM, STOP_GRACE)
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("mesh-testbed: cannot stop {}: {e}", self.label);
        }
        if std::thread::panicking() {
            eprintln!(
                "mesh-testbed: process {} logs kept at {} and {}\n--- stdout tail ---\n{}\n--- stderr tail ---\n{}",
                self.label,
                self.stdout_path.display(),
                self.stderr_path.display(),
                tail(&self.stdout(), TAIL_LINES),
                self.stderr_tail(),
            );
        } else if std::env::var_os(KEEP_LOGS_ENV).is_none() {
            let _ = std::fs::remove_file(&self.stdout_path);
            let _ = std::fs::remove_file(&self.stderr_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is gone or a zombie (killed, waiting to be reaped by whoever adopted it).
    fn dead(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    }

    #[test]
    fn waits_for_output_and_stops_the_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & echo child $!; echo ready; wait"]);
        let mut p = Process::start(cmd, "sh-test").expect("sh starts");
        p.wait_for_output("ready", Duration::from_secs(5))
            .expect("prints ready");
        let child: i32 = p
            .stdout()
            .lines()
            .find_map(|l| l.strip_prefix("child ")?.parse().ok())
            .expect("child pid");
        assert!(!dead(child));
        let status = p.stop().expect("stops");
        assert!(!status.success());
        // The background sleep was in the same group and must be gone too.
        std::thread::sleep(Duration::from_millis(50));
        assert!(dead(child), "background child {child} survived");
    }

    #[test]
    fn early_exit_is_reported_with_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo broken config >&2; exit 2"]);
        let mut p = Process::start(cmd, "sh-fail").expect("sh starts");
        let err = p
            .wait_for_output("never", Duration::from_secs(5))
            .expect_err("exits");
        assert!(err.to_string().contains("broken config"), "{err}");
    }

    #[test]
    fn logs_are_removed_after_a_normal_drop() {
        let mut cmd = Command::new("true");
        cmd.arg("x");
        let p = Process::start(cmd, "true").expect("true starts");
        let path = p.stdout_path().to_owned();
        assert!(path.exists());
        drop(p);
        assert!(!path.exists() || std::env::var_os(KEEP_LOGS_ENV).is_some());
    }
}
