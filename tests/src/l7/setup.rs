//! A ready-made L7 test mesh: a client pod on node 1, a waypoint pod (outside the mesh) and echo
//! backends on node 2, and services bound to the waypoint.

use crate::Pod;
use crate::mesh::{Mesh, MeshBuilder, PodSpec};

use super::{HttpResult, L7Error, Waypoint, curl, start_echo};
use crate::{Process, bin_path};

/// The namespace of every pod of an [`L7Mesh`].
pub const NS: &str = "default";

/// Services of the standard L7 mesh (`WAYPOINT` is replaced by the waypoint's address): `echo`
/// (both versions, 10.96.0.10), `echo-v1` (10.96.0.11), `echo-v2` (10.96.0.12); port 80 is HTTP
/// and 7070 gRPC, both to the echo's 8080.
pub const ECHO_SERVICES: &str = "services:
  - {name: echo, namespace: default, vips: [10.96.0.10], selector: {app: echo}, waypoint: {address: WAYPOINT},
     ports: [{port: 80, targetPort: 8080, appProtocol: http}, {port: 7070, targetPort: 8080, appProtocol: grpc}]}
  - {name: echo-v1, namespace: default, vips: [10.96.0.11], selector: {version: v1}, waypoint: {address: WAYPOINT},
     ports: [{port: 80, targetPort: 8080, appProtocol: http}, {port: 7070, targetPort: 8080, appProtocol: grpc}]}
  - {name: echo-v2, namespace: default, vips: [10.96.0.12], selector: {version: v2}, waypoint: {address: WAYPOINT},
     ports: [{port: 80, targetPort: 8080, appProtocol: http}, {port: 7070, targetPort: 8080, appProtocol: grpc}]}
";

/// One echo backend pod.
#[derive(Debug, Clone)]
pub struct EchoSpec {
    /// Pod name (reported by the echo as `pod`).
    pub name: String,
    /// Labels (services select on them).
    pub labels: Vec<(String, String)>,
    /// Extra `mesh-echo` arguments (`--status 503`, `--delay-ms 2000`).
    pub args: Vec<String>,
    /// Also run a TCP echo with a banner (`mesh-testapp serve --banner`) on this port.
    pub tcp_port: Option<u16>,
}

impl EchoSpec {
    /// A backend `name` labelled `app=<app>, version=<version>`, answering with `version`.
    pub fn new(name: &str, app: &str, version: &str) -> Self {
        Self {
            name: name.into(),
            labels: vec![
                ("app".into(), app.into()),
                ("version".into(), version.into()),
            ],
            args: vec!["--version".into(), version.into()],
            tcp_port: None,
        }
    }

    /// Also runs a TCP echo that greets with `hello from <pod>` on `port`.
    pub fn tcp_port(mut self, port: u16) -> Self {
        self.tcp_port = Some(port);
        self
    }

    /// Adds `mesh-echo` arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }
}

/// A running L7 test mesh.
pub struct L7Mesh {
    // Drop order: processes before the mesh (and its namespaces).
    echoes: Vec<Process>,
    /// The waypoint.
    pub waypoint: Waypoint,
    /// The mesh.
    pub mesh: Mesh,
    client: usize,
    waypoint_pod: usize,
}

impl L7Mesh {
    /// Builds the mesh: `services` is the YAML appended to the workloads (`WAYPOINT` = the
    /// waypoint's address), `echoes` the backend pods (all on node 2, port 8080).
    pub fn start(tag: &str, echoes: &[EchoSpec], services: &str) -> Result<Self, L7Error> {
        Self::start_with_waypoint_args(tag, echoes, services, &[])
    }

    /// [`L7Mesh::start`] with extra waypoint flags (e.g. `--jwks-ca FILE`).
    pub fn start_with_waypoint_args(
        tag: &str,
        echoes: &[EchoSpec],
        services: &str,
        waypoint_args: &[&str],
    ) -> Result<Self, L7Error> {
        let err = |e: crate::mesh::MeshError| L7Error::Start {
            what: "mesh".into(),
            detail: e.to_string(),
        };
        let mut b = MeshBuilder::new(tag, 2).map_err(err)?;
        let client = b.pod(1, PodSpec::new("client")).map_err(err)?;
        let wp = b.pod(2, PodSpec::new("waypoint").outside()).map_err(err)?;
        let wp_ip = b.pod_ip(wp).to_string();
        let mut idx = Vec::new();
        for e in echoes {
            let mut spec = PodSpec::new(&e.name).sa("echo");
            for (k, v) in &e.labels {
                spec = spec.label(k, v);
            }
            idx.push(b.pod(2, spec).map_err(err)?);
        }
        b.yaml(&services.replace("WAYPOINT", &wp_ip));
        let mesh = b.start().map_err(err)?;
        let files = super::WaypointFiles {
            config: mesh.dir().join("ztunnel.yaml"),
            ca_cert: mesh.dir().join("ca.pem"),
            ca_key: mesh.dir().join("ca-key.pem"),
            routes: mesh.dir().join("routes-waypoint"),
            args: waypoint_args.iter().map(|a| a.to_string()).collect(),
        };
        let waypoint =
            Waypoint::start_with(&bin_path("waypoint"), mesh.pod(wp), &files, NS, "waypoint")?;
        let mut procs = Vec::new();
        for (e, i) in echoes.iter().zip(idx) {
            let args: Vec<&str> = e.args.iter().map(String::as_str).collect();
            procs.push(start_echo(mesh.pod(i), NS, 8080, &args)?);
            if let Some(port) = e.tcp_port {
                let pod = mesh.pod(i);
                let p = port.to_string();
                let mut tcp = pod
                    .spawn(
                        bin_path("mesh-testapp"),
                        &["serve", "--port", &p, "--banner"],
                    )
                    .map_err(|e| L7Error::Start {
                        what: "mesh-testapp".into(),
                        detail: e.to_string(),
                    })?;
                tcp.wait_for_output(crate::testapp::cli::READY_LINE, super::START_TIMEOUT)
                    .map_err(|e| L7Error::Start {
                        what: "mesh-testapp".into(),
                        detail: e.to_string(),
                    })?;
                procs.push(tcp);
            }
        }
        Ok(Self {
            echoes: procs,
            waypoint,
            mesh,
            client,
            waypoint_pod: wp,
        })
    }

    /// The client pod (enrolled, node 1, service account `client`).
    pub fn client(&self) -> &Pod {
        self.mesh.pod(self.client)
    }

    /// The waypoint's pod (outside the mesh, node 2).
    pub fn waypoint_pod(&self) -> &Pod {
        self.mesh.pod(self.waypoint_pod)
    }

    /// `curl` from the client pod.
    pub fn curl(&self, url: &str, extra: &[&str]) -> Result<HttpResult, L7Error> {
        curl(self.client(), url, extra)
    }

    /// `n` GETs of `url` in one curl run (one connection, so one tunnel through the mesh);
    /// returns the answering pod of each (`""` when not an echo answer) and the status codes.
    pub fn batch(
        &self,
        url: &str,
        n: usize,
        extra: &[&str],
    ) -> Result<Vec<(u16, String)>, L7Error> {
        let mut args: Vec<&str> = vec!["-s", "-S", "--max-time", "60", "-w", "\n%{http_code}\n"];
        args.extend_from_slice(extra);
        args.extend(std::iter::repeat_n(url, n));
        let out = self
            .client()
            .netns
            .run_timeout("curl", &args, std::time::Duration::from_secs(90))
            .map_err(|e| L7Error::Curl {
                url: url.into(),
                detail: e.to_string(),
            })?;
        let lines: Vec<&str> = out.stdout.lines().collect();
        let mut res = Vec::new();
        for pair in lines.chunks(2) {
            if let [body, code] = pair {
                let pod = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["pod"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                res.push((code.trim().parse().unwrap_or(0), pod));
            }
        }
        if res.len() != n {
            return Err(L7Error::Curl {
                url: url.into(),
                detail: format!(
                    "{} answers instead of {n}: {}",
                    res.len(),
                    out.stderr.trim()
                ),
            });
        }
        Ok(res)
    }

    /// The echo processes, in the order given.
    pub fn echoes(&self) -> &[Process] {
        &self.echoes
    }
}
