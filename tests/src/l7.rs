//! Layer-7 end-to-end helpers: a real `waypoint` process in a pod of a test mesh (reading the
//! mesh's config file and a routes directory), `mesh-echo` backends, and `curl` as the client.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod conformance;
mod setup;

use crate::mesh::Mesh;
use crate::{Pod, Process, bin_path};

pub use setup::{ECHO_SERVICES, EchoSpec, L7Mesh, NS};

/// How long a waypoint or echo server may take to start, or new routes to load.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of one curl invocation.
const CURL_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the L7 helpers.
#[derive(Debug, thiserror::Error)]
pub enum L7Error {
    /// A process could not be started or did not become ready.
    #[error("{what}: {detail}")]
    Start {
        /// Which process.
        what: String,
        /// Why.
        detail: String,
    },
    /// A file could not be written.
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// curl failed to run or its output was not an HTTP response.
    #[error("curl {url}: {detail}")]
    Curl {
        /// The URL.
        url: String,
        /// What went wrong (curl's stderr).
        detail: String,
    },
    /// Routes did not load in time.
    #[error(
        "routes version {want} not loaded after {after:?} (still {have}); waypoint log:\n{log}"
    )]
    Routes {
        /// Expected version.
        want: u64,
        /// Loaded version.
        have: u64,
        /// Time waited.
        after: Duration,
        /// Waypoint stderr tail.
        log: String,
    },
}

/// The files a waypoint is started with.
#[derive(Debug, Clone)]
pub struct WaypointFiles {
    /// Mesh config (the ztunnel file format).
    pub config: PathBuf,
    /// CA certificate (testing mode: the waypoint signs its own certificate).
    pub ca_cert: PathBuf,
    /// CA key.
    pub ca_key: PathBuf,
    /// Routes directory.
    pub routes: PathBuf,
    /// Extra command-line flags (e.g. `--jwks-ca FILE`).
    pub args: Vec<String>,
}

/// A running waypoint in a pod.
pub struct Waypoint {
    process: Process,
    pod_netns: String,
    routes: PathBuf,
}

impl Waypoint {
    /// Starts `waypoint` in `pod` (namespace `namespace`, service account `sa`, which must be the
    /// pod's) with the mesh's config file and CA and an empty routes directory; waits until it
    /// listens on 15008.
    pub fn start(mesh: &Mesh, pod: &Pod, namespace: &str, sa: &str) -> Result<Self, L7Error> {
        let files = WaypointFiles {
            config: mesh.dir().join("ztunnel.yaml"),
            ca_cert: mesh.dir().join("ca.pem"),
            ca_key: mesh.dir().join("ca-key.pem"),
            routes: mesh.dir().join(format!("routes-{}", pod.name)),
            args: Vec::new(),
        };
        Self::start_with(&bin_path("waypoint"), pod, &files, namespace, sa)
    }

    /// Starts the waypoint binary `bin` (e.g. a release build) in `pod` with `files` (the routes
    /// directory is created if missing); for harnesses that own their topology, such as
    /// `mesh-benches`. Runtime workers and log filter come from `WAYPOINT_WORKERS` (default: one
    /// per core) and `WAYPOINT_LOG` (default `info`).
    pub fn start_with(
        bin: &Path,
        pod: &Pod,
        files: &WaypointFiles,
        namespace: &str,
        sa: &str,
    ) -> Result<Self, L7Error> {
        let routes = files.routes.clone();
        std::fs::create_dir_all(&routes).map_err(|e| L7Error::Io(routes.clone(), e))?;
        let arg = |p: &Path| p.display().to_string();
        let mut cmd = pod.command(bin);
        cmd.args(["--config", &arg(&files.config), "--routes", &arg(&routes)])
            .args([
                "--ca-cert",
                &arg(&files.ca_cert),
                "--ca-key",
                &arg(&files.ca_key),
            ])
            .args(["--namespace", namespace, "--service-account", sa])
            .args(["--ip", &pod.ip.to_string()])
            .args(&files.args)
            .args([
                "--workers",
                &std::env::var("WAYPOINT_WORKERS").unwrap_or_else(|_| "0".into()),
            ])
            .env(
                "RUST_LOG",
                std::env::var("WAYPOINT_LOG").unwrap_or_else(|_| "info".into()),
            );
        let process = pod
            .netns
            .spawn_command(&format!("waypoint-{}", pod.name), cmd)
            .map_err(|e| L7Error::Start {
                what: "waypoint".into(),
                detail: e.to_string(),
            })?;
        let mut wp = Self {
            process,
            pod_netns: pod.netns.name().to_owned(),
            routes,
        };
        wp.process
            .wait_for_output("waypoint started", START_TIMEOUT)
            .map_err(|e| L7Error::Start {
                what: "waypoint".into(),
                detail: e.to_string(),
            })?;
        Ok(wp)
    }

    /// The waypoint process (logs: `stdout()`, `stderr()`).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Stdout and stderr of the waypoint (for assertion messages).
    pub fn logs(&self) -> String {
        format!("{}{}", self.process.stdout(), self.process.stderr())
    }

    /// The waypoint's logs once `done` holds for them, or after a few seconds as they stand: log
    /// records are written in batches, a fraction of a second after the request.
    pub fn logs_when(&self, done: impl Fn(&str) -> bool) -> String {
        let out = self.process.stdout_when(done);
        format!("{out}{}", self.process.stderr())
    }

    /// The routes directory.
    pub fn routes_dir(&self) -> &Path {
        &self.routes
    }

    /// Writes `yaml` as routes file `name` (atomically) without waiting.
    pub fn write_routes_file(&self, name: &str, yaml: &str) -> Result<(), L7Error> {
        let path = self.routes.join(name);
        let tmp = self.routes.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).map_err(|e| L7Error::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| L7Error::Io(path, e))
    }

    /// Writes routes file `name` and waits until the waypoint has loaded the new route set.
    pub fn apply_routes(&self, name: &str, yaml: &str) -> Result<(), L7Error> {
        let before = self.routes_version();
        self.write_routes_file(name, yaml)?;
        self.wait_routes_version(before + 1)
    }

    /// `GET` on the waypoint's admin/metrics servers, from inside its pod.
    pub fn local_get(&self, addr: &str, path: &str) -> String {
        let out = crate::cmd::run(
            std::process::Command::new("ip").args([
                "netns",
                "exec",
                &self.pod_netns,
                "curl",
                "-s",
                &format!("http://{addr}{path}"),
            ]),
            None,
            Duration::from_secs(5),
        );
        out.map(|o| o.stdout).unwrap_or_default()
    }

    /// The `/config_dump` JSON.
    pub fn config_dump(&self) -> serde_json::Value {
        serde_json::from_str(&self.local_get("127.0.0.1:15000", "/config_dump"))
            .unwrap_or(serde_json::Value::Null)
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        self.local_get("127.0.0.1:15020", "/metrics")
    }

    /// Version of the loaded route set (0 = none).
    pub fn routes_version(&self) -> u64 {
        self.config_dump()["routes"]["version"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until route set version `want` (or newer) is loaded.
    pub fn wait_routes_version(&self, want: u64) -> Result<(), L7Error> {
        let start = Instant::now();
        loop {
            let have = self.routes_version();
            if have >= want {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(L7Error::Routes {
                    want,
                    have,
                    after: START_TIMEOUT,
                    log: tail(&self.logs()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The last few KiB of `text`.
fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(4096);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// Starts `mesh-echo` in `pod` on `port` with `args` (e.g. `--version v1`), reporting namespace
/// `ns`; waits until it listens.
pub fn start_echo(pod: &Pod, ns: &str, port: u16, args: &[&str]) -> Result<Process, L7Error> {
    let mut cmd = pod.command(bin_path("mesh-echo"));
    cmd.args(["--port", &port.to_string()])
        .args(args)
        .env("POD_NAMESPACE", ns);
    let mut p = pod
        .netns
        .spawn_command(&format!("echo-{}", pod.name), cmd)
        .map_err(|e| L7Error::Start {
            what: "mesh-echo".into(),
            detail: e.to_string(),
        })?;
    p.wait_for_output(crate::echo::READY_LINE, START_TIMEOUT)
        .map_err(|e| L7Error::Start {
            what: "mesh-echo".into(),
            detail: e.to_string(),
        })?;
    Ok(p)
}

/// What curl received.
#[derive(Debug, Clone, Default)]
pub struct HttpResult {
    /// Status code.
    pub status: u16,
    /// Response headers (names lower case), in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl HttpResult {
    /// The last value of response header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (the echo's answer), or `Null`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The answering pod, from the echo's JSON (empty if none).
    pub fn pod(&self) -> String {
        self.json()["pod"].as_str().unwrap_or_default().to_owned()
    }

    /// The values the backend saw for request header `name`, joined with `,`.
    pub fn backend_header(&self, name: &str) -> Option<String> {
        let v = self.json();
        let values = v["headers"][name.to_ascii_lowercase()].as_array()?.clone();
        Some(
            values
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// Parses `curl -i` output (the last response head, then the body).
pub fn parse_curl(out: &str) -> Option<HttpResult> {
    let (head, body) = out.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpResult {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Runs `curl -s -i <extra> <url>` inside `pod` (never following redirects).
pub fn curl(pod: &Pod, url: &str, extra: &[&str]) -> Result<HttpResult, L7Error> {
    let mut args: Vec<&str> = vec!["-s", "-S", "-i", "--max-time", "15"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = pod
        .netns
        .run_timeout("curl", &args, CURL_TIMEOUT)
        .map_err(|e| L7Error::Curl {
            url: url.into(),
            detail: e.to_string(),
        })?;
    if !out.success() {
        return Err(L7Error::Curl {
            url: url.into(),
            detail: format!("exit {:?}: {}", out.status.code(), out.stderr.trim()),
        });
    }
    parse_curl(&out.stdout).ok_or_else(|| L7Error::Curl {
        url: url.into(),
        detail: format!("not an HTTP response: {:?}", out.stdout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_output_is_parsed() {
        let out = "HTTP/1.1 302 Found\r\nlocation: http://x/y\r\nX-A: 1\r\n\r\nbody";
        let r = parse_curl(out).unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("Location"), Some("http://x/y"));
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.body, "body");
        assert!(parse_curl("garbage").is_none());
    }
}
