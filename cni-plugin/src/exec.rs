//! Running the network tools (`nft`, `iptables-restore`, `ip`) inside a network namespace.
//!
//! The process is spawned from a thread that entered the namespace (see [`Netns::run`]), so it
//! starts there; no `ip netns exec` is needed and any nsfs descriptor works, named or not.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::netns::{Netns, NetnsError};

/// Errors of running a tool.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The program could not be started.
    #[error("cannot run `{program}` in netns {netns}: {source} (is it installed and on PATH?)")]
    Spawn {
        /// The program name.
        program: String,
        /// The namespace label.
        netns: String,
        /// The cause.
        source: io::Error,
    },
    /// The program ran and failed.
    #[error("`{command}` failed in netns {netns} ({status}): {stderr}")]
    Failed {
        /// The command line, for the operator.
        command: String,
        /// The namespace label.
        netns: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// The tool's stderr, trimmed.
        stderr: String,
    },
}

impl ExecError {
    /// The tool's stderr if it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ExecError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Runs `program args...` inside `netns`, feeding `stdin` if given; returns its stdout.
pub fn run_in(
    netns: &Netns,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ExecError> {
    netns.run(|| run_here(netns.label(), program, args, stdin))?
}

fn run_here(
    label: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ExecError> {
    let spawn_err = |source| ExecError::Spawn {
        program: program.to_string(),
        netns: label.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes the pipe: its exit status and stderr say why.
        if let Err(err) = pipe.write_all(input.as_bytes()) {
            tracing::debug!(%err, program, "tool closed its stdin early");
        }
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ExecError::Failed {
            command: std::iter::once(program)
                .chain(args.iter().copied())
                .collect::<Vec<_>>()
                .join(" "),
            netns: label.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
