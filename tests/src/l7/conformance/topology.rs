//! The conformance suite's environment (`manifests/base-mesh.yaml`) on the netns harness: the
//! echo pods of both namespaces (named like Deployment pods), the `echo`, `echo-v1` and `echo-v2`
//! services with their five ports, all bound to one waypoint; and how a case's request is sent.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::super::{HttpResult, L7Error, Waypoint, parse_curl, start_echo};
use super::Case;
use crate::Process;
use crate::mesh::{Mesh, MeshBuilder, PodSpec};

/// The suite's main namespace.
pub const MESH_NS: &str = "gateway-conformance-mesh";
/// The consumer namespace.
pub const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";
/// Routes file the tests' manifests are written to.
const ROUTES_FILE: &str = "conformance.yaml";
/// Separates answers in a multi-request curl run.
const SEP: &str = "\n@@@";

/// Services of `base-mesh.yaml` (`WAYPOINT` = the waypoint's address).
const SERVICES: &str = "services:
  - {name: echo, namespace: gateway-conformance-mesh, vips: [10.96.1.10], selector: {app: echo}, waypoint: {address: WAYPOINT}, ports: PORTS}
  - {name: echo-v1, namespace: gateway-conformance-mesh, vips: [10.96.1.11], selector: {app: echo, version: v1}, waypoint: {address: WAYPOINT}, ports: PORTS}
  - {name: echo-v2, namespace: gateway-conformance-mesh, vips: [10.96.1.12], selector: {app: echo, version: v2}, waypoint: {address: WAYPOINT}, ports: PORTS}
";
const PORTS: &str = "[{port: 80, targetPort: 8080, appProtocol: http}, {port: 8080, targetPort: 8080, appProtocol: http}, \
{port: 443, targetPort: 8443}, {port: 9090, targetPort: 9090}, {port: 7070, targetPort: 7070, appProtocol: grpc}]";

/// The running environment.
pub struct ConformanceMesh {
    echoes: Vec<Process>,
    waypoint: Waypoint,
    mesh: Mesh,
    /// (namespace, version) -> pod index.
    pods: HashMap<(String, String), usize>,
    /// (namespace, name) -> VIP.
    vips: HashMap<(String, String), String>,
    applied: Mutex<String>,
}

impl ConformanceMesh {
    /// Builds the environment and waits until everything serves.
    pub fn start() -> Result<Self, L7Error> {
        let err = |e: crate::mesh::MeshError| L7Error::Start {
            what: "conformance mesh".into(),
            detail: e.to_string(),
        };
        let mut b = MeshBuilder::new("conf", 2).map_err(err)?;
        let specs = [
            (1, MESH_NS, "echo-v1-7c9d8b6f5-x2x9q", "v1"),
            (2, MESH_NS, "echo-v2-6f8b9c7d5-k4k7p", "v2"),
            (1, CONSUMER_NS, "echo-v1-5d9c7b8f6-c7n5r", "v1"),
        ];
        let mut pods = HashMap::new();
        for (node, ns, name, version) in specs {
            let spec = PodSpec::new(name)
                .ns(ns)
                .sa("default")
                .label("app", "echo")
                .label("version", version);
            pods.insert(
                (ns.to_owned(), version.to_owned()),
                b.pod(node, spec).map_err(err)?,
            );
        }
        let wp = PodSpec::new("waypoint")
            .ns(MESH_NS)
            .sa("waypoint")
            .outside();
        let wp = b.pod(2, wp).map_err(err)?;
        let wp_ip = b.pod_ip(wp).to_string();
        b.yaml(&SERVICES.replace("PORTS", PORTS).replace("WAYPOINT", &wp_ip));
        let mesh = b.start().map_err(err)?;
        let waypoint = Waypoint::start(&mesh, mesh.pod(wp), MESH_NS, "waypoint")?;
        let mut echoes = Vec::new();
        for ((ns, version), i) in &pods {
            for port in [8080, 7070] {
                echoes.push(start_echo(mesh.pod(*i), ns, port, &["--version", version])?);
            }
        }
        let vips = [
            ("echo", "10.96.1.10"),
            ("echo-v1", "10.96.1.11"),
            ("echo-v2", "10.96.1.12"),
        ]
        .into_iter()
        .map(|(n, v)| ((MESH_NS.to_owned(), n.to_owned()), v.to_owned()))
        .collect();
        Ok(Self {
            echoes,
            waypoint,
            mesh,
            pods,
            vips,
            applied: Mutex::new(String::new()),
        })
    }

    /// The waypoint (logs, config dump).
    pub fn waypoint(&self) -> &Waypoint {
        &self.waypoint
    }

    /// The echo processes.
    pub fn echoes(&self) -> &[Process] {
        &self.echoes
    }

    /// Makes `manifests` (relative to `dir`) the routes in force; `[]` deletes them.
    pub fn apply(&self, dir: &Path, manifests: &[String]) -> Result<(), L7Error> {
        let mut text = String::new();
        for m in manifests {
            let p = dir.join(m);
            text.push_str(&std::fs::read_to_string(&p).map_err(|e| L7Error::Io(p, e))?);
            text.push_str("\n---\n");
        }
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if *applied == text {
            return Ok(());
        }
        let before = self.waypoint.routes_version();
        if text.is_empty() {
            let path = self.waypoint.routes_dir().join(ROUTES_FILE);
            std::fs::remove_file(&path).map_err(|e| L7Error::Io(path, e))?;
        } else {
            self.waypoint.write_routes_file(ROUTES_FILE, &text)?;
        }
        self.waypoint.wait_routes_version(before + 1)?;
        *applied = text;
        Ok(())
    }

    fn selector_version(selector: &str) -> Option<String> {
        selector
            .split(',')
            .find_map(|kv| kv.strip_prefix("version="))
            .map(str::to_owned)
    }

    /// Sends the case's request `n` times from its client pod: one curl run (one connection)
    /// for HTTP/1.1; one run per call for gRPC (curl 7.88 breaks HTTP/2 prior-knowledge
    /// connections reused for POSTs with "Error in the HTTP2 framing layer", even against a
    /// plain server).
    pub fn send(&self, case: &Case, n: usize) -> Result<Vec<HttpResult>, L7Error> {
        if case.request.protocol == "grpc" && n > 1 {
            let mut all = Vec::with_capacity(n);
            for _ in 0..n {
                all.append(&mut self.send_run(case, 1)?);
            }
            return Ok(all);
        }
        self.send_run(case, n)
    }

    fn send_run(&self, case: &Case, n: usize) -> Result<Vec<HttpResult>, L7Error> {
        let req = &case.request;
        let bad = |detail: String| L7Error::Curl {
            url: req.host.clone(),
            detail,
        };
        let version = Self::selector_version(&case.from.selector).unwrap_or_default();
        let client = self
            .pods
            .get(&(case.from.namespace.clone(), version))
            .ok_or_else(|| bad(format!("no client pod for {:?}", case.from)))?;
        let grpc = req.protocol == "grpc";
        let port = req.port.unwrap_or(80);
        let mut args: Vec<String> =
            vec!["-s".into(), "-S".into(), "--max-time".into(), "60".into()];
        let host = if let Some(sel) = req
            .host
            .strip_prefix("$POD_IP(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let v = Self::selector_version(sel).unwrap_or_default();
            let i = self
                .pods
                .get(&(MESH_NS.to_owned(), v))
                .ok_or_else(|| bad(format!("no pod {sel}")))?;
            self.mesh.pod(*i).ip.to_string()
        } else {
            let (name, ns) = req
                .host
                .split_once('.')
                .unwrap_or((&req.host, &case.from.namespace));
            let vip = self
                .vips
                .get(&(ns.to_owned(), name.to_owned()))
                .ok_or_else(|| bad(format!("no service {name}.{ns}")))?;
            args.extend(["--resolve".into(), format!("{}:{port}:{vip}", req.host)]);
            req.host.clone()
        };
        let authority = if port == 80 {
            host
        } else {
            format!("{host}:{port}")
        };
        let path = if grpc {
            "/proto.EchoTestService/Echo"
        } else if req.path.is_empty() {
            "/"
        } else {
            &req.path
        };
        let url = format!("http://{authority}{path}");
        if grpc {
            args.extend(
                [
                    "--http2-prior-knowledge",
                    "-X",
                    "POST",
                    "-H",
                    "content-type: application/grpc",
                    "--data-binary",
                    "",
                ]
                .map(String::from),
            );
        } else if let Some(m) = req.method.as_deref().filter(|m| *m != "GET") {
            args.extend(["-X".into(), m.to_owned()]);
        }
        for (k, v) in &req.headers {
            args.extend(["-H".into(), format!("{k}: {v}")]);
        }
        if n == 1 {
            args.push("-i".into());
        } else {
            args.extend(["-w".into(), format!("{SEP}%{{http_code}}@@@\n")]);
        }
        args.extend(std::iter::repeat_n(url.clone(), n));
        let pod = self.mesh.pod(*client);
        let out = pod
            .netns
            .run_timeout("curl", &args, std::time::Duration::from_secs(120))
            .map_err(|e| bad(e.to_string()))?;
        if !out.success() {
            return Err(bad(format!("curl {url} failed: {}", out.stderr.trim())));
        }
        let mut results = if n == 1 {
            vec![
                parse_curl(&out.stdout)
                    .ok_or_else(|| bad(format!("not HTTP: {:?}", out.stdout)))?,
            ]
        } else {
            split_batch(&out.stdout)
        };
        if grpc {
            for r in &mut results {
                r.body = first_json(&r.body);
            }
        }
        if results.len() != n {
            return Err(bad(format!("{} answers instead of {n}", results.len())));
        }
        Ok(results)
    }
}

/// Splits the output of a multi-request run (`body SEP code @@@`...).
fn split_batch(mut s: &str) -> Vec<HttpResult> {
    let mut out = Vec::new();
    while let Some(i) = s.find(SEP) {
        let body = s[..i].to_owned();
        let rest = &s[i + SEP.len()..];
        let Some(j) = rest.find("@@@") else { break };
        let status = rest[..j].trim().parse().unwrap_or(0);
        out.push(HttpResult {
            status,
            headers: Vec::new(),
            body,
        });
        s = rest[j + 3..].strip_prefix('\n').unwrap_or(&rest[j + 3..]);
    }
    out
}

/// The first JSON object in `body` (a gRPC message after its 5-byte prefix), as text.
fn first_json(body: &str) -> String {
    let Some(start) = body.find('{') else {
        return String::new();
    };
    let mut it =
        serde_json::Deserializer::from_str(&body[start..]).into_iter::<serde_json::Value>();
    it.next()
        .and_then(Result::ok)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_grpc_bodies_are_split() {
        let out = format!("{{\"pod\":\"a\"}}{SEP}200@@@\n{SEP}404@@@\n");
        let r = split_batch(&out);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].status, r[0].body.as_str()), (200, "{\"pod\":\"a\"}"));
        assert_eq!((r[1].status, r[1].body.as_str()), (404, ""));
        assert_eq!(first_json("\u{0}\u{0}{\"a\":1}grpc-status: 0"), "{\"a\":1}");
    }
}
