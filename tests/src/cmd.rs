//! Running short commands to completion with a deadline and captured output.
//!
//! Every command runs in its own process group so that a timeout kills it together with any
//! children it started.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Deadline for setup commands (`ip`, `sysctl`, ...) that should finish almost at once.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of running a command.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("cannot start `{cmd}`: {source} (is the program installed and on PATH?)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why spawning failed.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("cannot wait for `{cmd}`: {source}")]
    Wait {
        /// The command line.
        cmd: String,
        /// Why waiting failed.
        source: std::io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("`{cmd}` did not finish within {after:?} and was killed; stderr so far: {stderr}")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The deadline.
        after: Duration,
        /// What it wrote to stderr before it was killed.
        stderr: String,
    },
    /// The program exited unsuccessfully.
    #[error("`{cmd}` failed with {status}: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
}

/// The result of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl CmdOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// A readable command line for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

fn drain<R: Read + Send + 'static>(reader: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = reader {
            // A read error only truncates what we report; the exit status still tells the outcome.
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `cmd` to completion, feeding it `input` on stdin, killing its process group after
/// `timeout`. A non-zero exit is not an error here: see [`run_ok`].
pub fn run(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<CmdOutput, CmdError> {
    let line = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(|source| CmdError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        // Written from a thread so a child that prints before reading cannot deadlock us; the
        // child may exit without reading everything, and its status reports that.
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = rx.recv();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            return Err(CmdError::Timeout {
                cmd: line,
                after: timeout,
                stderr,
            });
        }
    };
    let status = status.map_err(|source| CmdError::Wait {
        cmd: line.clone(),
        source,
    })?;
    // Children that kept the pipes open would block the readers: make sure none survive.
    let _ = killpg(pgid, Signal::SIGKILL);
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`], but a non-zero exit is an error carrying stderr; returns stdout.
pub fn run_ok(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, CmdError> {
    let line = describe(cmd);
    let out = run(cmd, input, timeout)?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(CmdError::Failed {
            cmd: line,
            status: out.status,
            stderr: out.stderr.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            None,
            DEFAULT_TIMEOUT,
        )
        .expect("sh runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn feeds_stdin() {
        let out =
            run_ok(&mut Command::new("cat"), Some(b"abc"), DEFAULT_TIMEOUT).expect("cat runs");
        assert_eq!(out, "abc");
    }

    #[test]
    fn kills_on_timeout() {
        let started = std::time::Instant::now();
        let err = run(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            None,
            Duration::from_millis(200),
        )
        .expect_err("must time out");
        assert!(matches!(err, CmdError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn failure_carries_stderr() {
        let err = run_ok(
            Command::new("sh").args(["-c", "echo boom >&2; exit 1"]),
            None,
            DEFAULT_TIMEOUT,
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
