//! Readiness probes of local mode (`readinessProbe` `httpGet` and `tcpSocket` with
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`, `successThreshold`,
//! `failureThreshold`, Kubernetes' defaults). Like the kubelet, which probes from the host,
//! probes run from the pod's **node netns** to the pod's address (for an enrolled pod the node
//! agent's rule SNATs them to 169.254.7.127, which the pod's redirect rules let through past
//! ztunnel). A pod with probes is not ready until every probe has passed `successThreshold`
//! times in a row and turns unready after `failureThreshold` failures in a row; the runtime's
//! Ready condition follows ([`super::runtime::RuntimeHook::ready`]).
//!
//! [`ProbeState`] is the pure state machine (time passed in); [`check`] performs one probe.

pub mod hook;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Errors of a probe's spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    /// The probe is not usable.
    #[error("container {container:?}: readinessProbe: {detail}")]
    Invalid {
        /// The container.
        container: String,
        /// What is wrong.
        detail: String,
    },
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `httpGet`: status 200-399 passes.
    Http {
        /// Port on the pod.
        port: u16,
        /// Request path (with its query).
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`: a connection passes.
    Tcp {
        /// Port on the pod.
        port: u16,
    },
}

/// One container's readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The container.
    pub container: String,
    /// What to do.
    pub action: Action,
    /// Wait before the first probe.
    pub initial_delay: Duration,
    /// Time between probes.
    pub period: Duration,
    /// Time one probe gets.
    pub timeout: Duration,
    /// Passes in a row to become ready.
    pub success_threshold: u32,
    /// Failures in a row to become unready.
    pub failure_threshold: u32,
}

fn seconds(probe: &Value, field: &str, default: u64, min: u64) -> Result<u64, String> {
    match &probe[field] {
        Value::Null => Ok(default),
        v => v
            .as_u64()
            .filter(|n| *n >= min)
            .ok_or_else(|| format!("{field} must be an integer >= {min}, got {v}")),
    }
}

fn port(v: &Value, container: &Value) -> Result<u16, String> {
    match v {
        Value::String(name) => container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| u16::try_from(p["containerPort"].as_u64()?).ok())
            .ok_or_else(|| format!("port {name:?} names no port of the container")),
        v => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0)
            .ok_or_else(|| format!("port {v} is not a port number or name")),
    }
}

fn parse_one(container: &Value, probe: &Value) -> Result<ProbeSpec, String> {
    let action = if !probe["httpGet"].is_null() {
        let get = &probe["httpGet"];
        if get["scheme"].as_str().is_some_and(|s| s != "HTTP") {
            return Err("httpGet: only scheme HTTP is supported".into());
        }
        let path = get["path"].as_str().unwrap_or("/");
        let headers = get["httpHeaders"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| match (h["name"].as_str(), h["value"].as_str()) {
                (Some(n), Some(v))
                    if !n.is_empty()
                        && !n.contains([':', '\r', '\n'])
                        && !v.contains(['\r', '\n']) =>
                {
                    Ok((n.to_owned(), v.to_owned()))
                }
                _ => Err(format!("httpGet: bad header {h}")),
            })
            .collect::<Result<_, _>>()?;
        if !path.starts_with('/') || path.contains([' ', '\r', '\n']) {
            return Err(format!(
                "httpGet: path {path:?} must start with / and hold no spaces"
            ));
        }
        Action::Http {
            port: port(&get["port"], container)?,
            path: path.to_owned(),
            headers,
        }
    } else if !probe["tcpSocket"].is_null() {
        Action::Tcp {
            port: port(&probe["tcpSocket"]["port"], container)?,
        }
    } else {
        return Err("only httpGet and tcpSocket probes are supported".into());
    };
    Ok(ProbeSpec {
        container: container["name"].as_str().unwrap_or_default().to_owned(),
        action,
        initial_delay: Duration::from_secs(seconds(probe, "initialDelaySeconds", 0, 0)?),
        period: Duration::from_secs(seconds(probe, "periodSeconds", 10, 1)?),
        timeout: Duration::from_secs(seconds(probe, "timeoutSeconds", 1, 1)?),
        success_threshold: u32::try_from(seconds(probe, "successThreshold", 1, 1)?)
            .unwrap_or(u32::MAX),
        failure_threshold: u32::try_from(seconds(probe, "failureThreshold", 3, 1)?)
            .unwrap_or(u32::MAX),
    })
}

/// The readiness probes of a pod object's containers (none: the pod is ready when it runs).
pub fn readiness_probes(pod: &Value) -> Result<Vec<ProbeSpec>, ProbeError> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !c["readinessProbe"].is_null())
        .map(|c| {
            parse_one(c, &c["readinessProbe"]).map_err(|detail| ProbeError::Invalid {
                container: c["name"].as_str().unwrap_or_default().to_owned(),
                detail,
            })
        })
        .collect()
}

/// The state of one probe of one pod.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// The probe.
    pub spec: ProbeSpec,
    next: Instant,
    successes: u32,
    failures: u32,
    ready: bool,
}

impl ProbeState {
    /// A probe of a container that started at `started`: unready, first probe after the
    /// initial delay.
    pub fn new(spec: ProbeSpec, started: Instant) -> Self {
        Self {
            next: started + spec.initial_delay,
            spec,
            successes: 0,
            failures: 0,
            ready: false,
        }
    }

    /// Whether a probe is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Notes that a probe started at `now`: the next is one period later.
    pub fn started(&mut self, now: Instant) {
        self.next = now + self.spec.period;
    }

    /// Records a probe's result; returns whether readiness changed.
    pub fn record(&mut self, passed: bool) -> bool {
        let before = self.ready;
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.spec.success_threshold {
                self.ready = true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.spec.failure_threshold {
                self.ready = false;
            }
        }
        before != self.ready
    }

    /// Whether the probe currently says ready.
    pub fn ready(&self) -> bool {
        self.ready
    }
}

/// Performs `action` against `ip` from the current network namespace; `Err` says why it failed.
pub fn check(action: &Action, ip: Ipv4Addr, timeout: Duration) -> Result<(), String> {
    let port = match action {
        Action::Http { port, .. } | Action::Tcp { port } => *port,
    };
    let addr = SocketAddr::from((ip, port));
    let mut tcp =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let Action::Http { path, headers, .. } = action else {
        return Ok(());
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/meshctl\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = tcp
            .read(&mut buf)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: not an HTTP response"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("{addr}{path}: HTTP {status}"))
    }
}

#[cfg(test)]
mod tests;
