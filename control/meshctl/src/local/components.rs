//! Starting the mesh's real binaries as background processes inside node namespaces (like
//! host-network pods), each with its log file, and waiting until they are ready.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LocalError;
use super::state::ProcessRecord;

/// How long a component gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

/// A component to start.
pub struct Spec<'a> {
    /// Component name, also the log file's name.
    pub name: String,
    /// Network namespace to run in (empty: the root namespaces).
    pub netns: &'a str,
    /// The executable.
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// A started component.
#[derive(Debug)]
pub struct Started {
    /// The child (kept so that a failing `up` can reap it).
    pub child: Child,
    /// What the state file records.
    pub record: ProcessRecord,
}

/// Starts `spec` in its namespace in its own process group (it outlives `meshctl`), stdin from
/// /dev/null, stdout and stderr to `<log_dir>/<name>.log` (emptied first: readiness checks read
/// it, and a previous cluster's lines must not count).
pub fn spawn(spec: Spec<'_>, log_dir: &Path) -> Result<Started, LocalError> {
    let log = log_dir.join(format!("{}.log", spec.name));
    let io = |source| LocalError::Io {
        what: format!("open log file {}", log.display()),
        source,
    };
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    // `ip netns exec` replaces itself with the program: the pid is the program's. An empty
    // netns runs the program in the root namespaces (the pod runtime: the pod namespaces it
    // adds must be visible outside, which a private mount namespace would prevent).
    let mut cmd = if spec.netns.is_empty() {
        Command::new(&spec.exe)
    } else {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", spec.netns]).arg(&spec.exe);
        c
    };
    let child = cmd
        .args(&spec.args)
        .env(
            "RUST_LOG",
            std::env::var("MESHCTL_LOG").unwrap_or_else(|_| "info".into()),
        )
        // Plain log files: no ANSI colours.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| LocalError::Io {
            what: format!("start {} ({})", spec.name, spec.exe.display()),
            source,
        })?;
    let record = ProcessRecord {
        name: spec.name,
        pid: child.id(),
        exe: spec.exe,
        netns: spec.netns.to_owned(),
        log,
    };
    Ok(Started { child, record })
}

/// Waits until `ready()` holds, failing early when the component exits.
pub fn wait_ready(
    started: &mut Started,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        let exited = started.child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            return Err(LocalError::NotReady {
                component: started.record.name.clone(),
                what: what.to_owned(),
                exited: exited.map(|s| s.to_string()),
                log: started.record.log.clone(),
                tail: log_tail(&started.record.log),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Whether file `path` contains `needle`.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

/// The status code of `GET path` to `addr` from inside namespace `netns` (0 when unreachable).
pub fn http_status(netns: &str, addr: SocketAddr, path: &str) -> u16 {
    let Ok(ns) = mesh_cni::netns::Netns::open_named(netns) else {
        return 0;
    };
    ns.run(|| http_get_status(addr, path)).unwrap_or(0)
}

fn http_get_status(addr: SocketAddr, path: &str) -> u16 {
    let timeout = Duration::from_secs(1);
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, timeout) else {
        return 0;
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if tcp.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 64];
    let n = tcp.read(&mut head).unwrap_or(0);
    // "HTTP/1.x 200 ..."
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_of_a_local_http_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf).unwrap();
            c.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                .unwrap();
        });
        assert_eq!(http_get_status(addr, "/healthz/ready"), 503);
        server.join().unwrap();
        assert_eq!(http_get_status(addr, "/"), 0, "nothing listens any more");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let text: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        std::fs::write(&p, text.join("\n")).unwrap();
        let tail = log_tail(&p);
        assert!(
            tail.starts_with("line 25") && tail.ends_with("line 39"),
            "{tail}"
        );
    }
}
