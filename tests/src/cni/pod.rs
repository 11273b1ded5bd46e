//! A pod of a [`super::cluster::CniCluster`] and what tests do with it: run servers and
//! clients inside, keep connections open, look at its rules and ztunnel's listeners.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use super::PodArgs;
use super::cluster::WAIT;
use crate::{Netns, Process, bin_path};

/// A pod created through the CNI chain.
#[derive(Debug)]
pub struct CniPod {
    /// The pod's namespace (created bare; the chain wired it).
    pub netns: Netns,
    /// Runtime identity.
    pub args: PodArgs,
    /// Node number.
    pub node: u8,
    /// Address from host-local.
    pub ip: Ipv4Addr,
    /// The chain's final result (cached for CHECK and DEL).
    pub result: Value,
    /// The firewall backend the node's agent uses.
    pub backend: mesh_cni::rules::Backend,
}

impl CniPod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.args.namespace, self.args.name)
    }

    /// Starts `mesh-testapp serve --port <port> --banner` inside the pod.
    pub fn serve(&self, port: u16) -> anyhow::Result<Process> {
        let mut c = self.netns.command(bin_path("mesh-testapp"));
        c.args(["serve", "--port", &port.to_string(), "--banner"])
            .env("POD_NAME", &self.args.name);
        let mut p = self
            .netns
            .spawn_command(&format!("{}-serve", self.args.name), c)?;
        p.wait_for_output("listening on", WAIT)?;
        Ok(p)
    }

    /// One connection from inside the pod: sends `data`, returns the reply or the error text.
    pub fn send(&self, to: std::net::SocketAddr, data: &str) -> Result<String, String> {
        let out = self
            .netns
            .run_timeout(
                bin_path("mesh-testapp"),
                &[
                    "send",
                    "--to",
                    &to.to_string(),
                    "--data",
                    data,
                    "--timeout-ms",
                    "5000",
                ],
                Duration::from_secs(10),
            )
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(out.stderr)
        }
    }

    /// Opens a TCP connection from inside the pod and keeps it (a long-lived client).
    pub fn connect(&self, to: std::net::SocketAddr) -> anyhow::Result<std::net::TcpStream> {
        let ns = mesh_cni::netns::Netns::open_path(self.netns.path(), self.args.name.clone())?;
        let stream =
            ns.run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)))??;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(stream)
    }

    /// The pod's netns opened with the capture library (for rule checks).
    pub fn open_netns(&self) -> anyhow::Result<mesh_cni::netns::Netns> {
        Ok(mesh_cni::netns::Netns::open_path(
            self.netns.path(),
            self.args.name.clone(),
        )?)
    }

    /// Whether all of our redirect rules (nft) and the policy route are in the pod.
    pub fn rules_complete(&self) -> bool {
        self.rules_report().is_some_and(|r| r.is_complete())
    }

    /// Whether none of our redirect rules is left in the pod.
    pub fn rules_absent(&self) -> bool {
        self.rules_report().is_some_and(|r| r.is_absent())
    }

    /// Whether the pod holds exactly the rules of `opts` (none missing, none stale or extra)
    /// and the policy route.
    pub fn rules_complete_with(&self, opts: &mesh_cni::rules::RedirectOptions) -> bool {
        self.open_netns()
            .ok()
            .and_then(|ns| mesh_cni::rules::check(&ns, self.backend, opts).ok())
            .is_some_and(|r| r.is_complete())
    }

    fn rules_report(&self) -> Option<mesh_cni::rules::CheckReport> {
        let ns = self.open_netns().ok()?;
        mesh_cni::rules::check(&ns, self.backend, &Default::default()).ok()
    }

    /// Whether ztunnel's three listeners are open in the pod.
    pub fn ztunnel_listening(&self) -> bool {
        self.ztunnel_ports().is_some_and(|p| p.len() == 3)
    }

    /// Whether none of ztunnel's listeners is open in the pod.
    pub fn ztunnel_gone(&self) -> bool {
        self.ztunnel_ports().is_some_and(|p| p.is_empty())
    }

    /// Which of ztunnel's ports listen in the pod (read from the netns's socket table).
    fn ztunnel_ports(&self) -> Option<Vec<u16>> {
        let ns = self.open_netns().ok()?;
        let ports = mesh_cni::agent::listeners::listening_ports(&ns).ok()?;
        Some(
            mesh_cni::agent::listeners::ZTUNNEL_PORTS
                .into_iter()
                .filter(|p| ports.contains(p))
                .collect(),
        )
    }
}

/// Writes `line` on `stream` and reads until the echo of `line` arrived.
pub fn echo_roundtrip(stream: &mut std::net::TcpStream, line: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    stream.write_all(line.as_bytes())?;
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains(line) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed; got {got:?}"),
            ));
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(got)
}
