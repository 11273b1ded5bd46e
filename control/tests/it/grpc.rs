//! control in-process on loopback with real TLS: the config stream (node filtering, deltas, ACK, resume) and the
//! CA (authorization cases), driven by the real proxy-side clients of `mesh-xds`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_api::SnapshotParts;
use mesh_control::auth::{Caller, LocalTokens};
use mesh_control::config::ServeConfig;
use mesh_identity::{SpiffeId, TrustBundle};
use mesh_xds::channel::ControlTarget;
use mesh_xds::pb;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {serviceAccountName: web, nodeName: node-1, containers: [{name: c}]}
status: {phase: Running, podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {serviceAccountName: db, nodeName: node-2, containers: [{name: c}]}
status: {phase: Running, podIP: 10.2.0.2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.1, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"#;

const POLICY_WEB: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-allow, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/db"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-deny, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{}]
"#;

struct Control {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    tokens: LocalTokens,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Control {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("mkdir");
        std::fs::write(config_dir.join("mesh.yaml"), MESH).expect("write");
        std::fs::write(config_dir.join("policy.yaml"), POLICY_WEB).expect("write");
        let tokens = LocalTokens::load_or_create(&dir.path().join("token.key")).expect("key");
        let config = ServeConfig {
            config_dir: Some(config_dir),
            kubernetes: false,
            ca_dir: dir.path().join("ca"),
            token_key: Some(dir.path().join("token.key")),
            listen: "127.0.0.1:0".parse().expect("addr"),
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            namespace: "istio-system".into(),
            service_account: "mesh-control".into(),
            ztunnel_sa: ("istio-system".into(), "ztunnel".into()),
            cert_lifetime: Duration::from_secs(3600),
            waypoint_image: "unused".into(),
            advertise_address: None,
            status_dir: None,
            poll: Duration::from_millis(50),
        };
        let stop = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = mesh_control::app::serve(config, s, Some(tx)).await {
                panic!("control failed: {e:#}");
            }
        });
        let addr = tokio::time::timeout(WAIT, rx)
            .await
            .expect("control starts")
            .expect("address");
        Self {
            dir,
            addr,
            stop,
            tokens,
        }
    }

    fn target(&self) -> ControlTarget {
        let roots = std::fs::read(self.dir.path().join("ca/root-cert.pem")).expect("root");
        ControlTarget {
            addr: self.addr,
            roots: TrustBundle::from_pem(&roots).expect("roots"),
            identity: "spiffe://cluster.local/ns/istio-system/sa/mesh-control"
                .parse()
                .expect("id"),
        }
    }

    fn token_file(&self, ns: &str, sa: &str, node: Option<&str>) -> PathBuf {
        let caller = Caller {
            namespace: ns.into(),
            service_account: sa.into(),
            node: node.map(Into::into),
        };
        let path = self
            .dir
            .path()
            .join(format!("token-{ns}-{sa}-{}", node.unwrap_or("none")));
        std::fs::write(&path, self.tokens.issue(&caller)).expect("token");
        path
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.dir.path().join("config").join(file);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }
}

/// Raw stream: sends the first request, returns the response stream and the request sender.
async fn raw_stream(
    c: &Control,
    token: &Path,
    node: &str,
    kind: &str,
    held: Vec<(String, String)>,
) -> Result<
    (
        tonic::Streaming<pb::ConfigResponse>,
        tokio::sync::mpsc::Sender<pb::ConfigRequest>,
    ),
    tonic::Status,
> {
    let channel = mesh_xds::channel::channel(&c.target()).expect("channel");
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConfigRequest {
        node: node.into(),
        kind: kind.into(),
        initial_versions: held.into_iter().collect(),
        ..Default::default()
    })
    .await
    .expect("queue");
    let outbound = async_stream(&mut rx);
    let token = std::fs::read_to_string(token).expect("token");
    let req = mesh_xds::with_token(tonic::Request::new(outbound), &token)?;
    let resp = pb::config_discovery_client::ConfigDiscoveryClient::new(channel)
        .stream(req)
        .await?;
    Ok((resp.into_inner(), tx))
}

fn async_stream(
    rx: &mut tokio::sync::mpsc::Receiver<pb::ConfigRequest>,
) -> impl futures_util::Stream<Item = pb::ConfigRequest> + use<> {
    let (ftx, frx) = tokio::sync::mpsc::channel(4);
    let mut taken = std::mem::replace(rx, tokio::sync::mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(m) = taken.recv().await {
            if ftx.send(m).await.is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(frx, |mut r| async move { r.recv().await.map(|m| (m, r)) })
}

fn names(resp: &pb::ConfigResponse) -> Vec<&str> {
    let mut n: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    n.sort_unstable();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_filters_by_node_sends_deltas_and_resumes() {
    let c = Control::start().await;
    let token = c.token_file("istio-system", "ztunnel", Some("node-1"));
    let (mut inbound, tx) = raw_stream(&c, &token, "node-1", "ztunnel", vec![])
        .await
        .expect("stream");
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("msg");
    // Every workload and service, but only the policy of node-1's workload.
    assert_eq!(
        names(&first),
        [
            "authz/shop/web-allow",
            "service/shop/web",
            "workload/shop/db",
            "workload/shop/web"
        ]
    );
    assert_eq!(first.root_namespace, "istio-system");
    tx.send(pb::ConfigRequest {
        response_nonce: first.nonce.clone(),
        ..Default::default()
    })
    .await
    .expect("ack");

    // A policy change reaches the stream as a delta; a removed policy is named.
    c.write(
        "policy.yaml",
        &POLICY_WEB
            .replace("sa/db", "sa/other")
            .replace("name: db-deny", "name: db-deny2"),
    );
    let next = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("msg");
    assert_eq!(names(&next), ["authz/shop/web-allow"]);
    assert!(
        next.removed.is_empty(),
        "db policies were never sent to node-1: {:?}",
        next.removed
    );
    tx.send(pb::ConfigRequest {
        response_nonce: next.nonce.clone(),
        ..Default::default()
    })
    .await
    .expect("ack");
    c.write("policy.yaml", "");
    let gone = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("msg");
    assert_eq!(gone.removed, ["authz/shop/web-allow"]);
    drop((inbound, tx));

    // Resume: a proxy announcing what it holds gets only what differs.
    let held: Vec<(String, String)> = first
        .resources
        .iter()
        .filter(|r| !r.name.starts_with("authz/"))
        .map(|r| (r.name.clone(), r.version.clone()))
        .chain([("workload/shop/vanished".to_string(), "1".to_string())])
        .collect();
    let (mut inbound, _tx) = raw_stream(&c, &token, "node-1", "ztunnel", held)
        .await
        .expect("stream");
    let resumed = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("msg");
    assert!(
        resumed.resources.is_empty(),
        "nothing resent: {:?}",
        names(&resumed)
    );
    assert_eq!(resumed.removed, ["workload/shop/vanished"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_refuses_bad_tokens_and_other_nodes() {
    let c = Control::start().await;
    let wrong_node = c.token_file("istio-system", "ztunnel", Some("node-2"));
    let err = raw_stream(&c, &wrong_node, "node-1", "ztunnel", vec![])
        .await
        .expect_err("wrong node");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let not_ztunnel = c.token_file("shop", "web", Some("node-1"));
    let err = raw_stream(&c, &not_ztunnel, "node-1", "ztunnel", vec![])
        .await
        .expect_err("not ztunnel");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let forged = c.dir.path().join("forged");
    let other = LocalTokens::new(b"not the key".to_vec());
    let caller = Caller {
        namespace: "istio-system".into(),
        service_account: "ztunnel".into(),
        node: Some("node-1".into()),
    };
    std::fs::write(&forged, other.issue(&caller)).expect("write");
    let err = raw_stream(&c, &forged, "node-1", "ztunnel", vec![])
        .await
        .expect_err("forged");
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
}

/// Keeps every config it accepted; rejects while `reject` is set.
#[derive(Default)]
struct TestSink {
    got: Arc<Mutex<Vec<SnapshotParts>>>,
    reject: Arc<std::sync::atomic::AtomicBool>,
}

impl mesh_xds::client::ConfigSink for TestSink {
    fn current(&self) -> mesh_xds::client::Received {
        let parts = self
            .got
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default();
        mesh_xds::client::Received {
            parts,
            l7_objects: Default::default(),
        }
    }

    fn apply(&self, config: mesh_xds::client::Received) -> Result<(), String> {
        if self.reject.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("rejected by the test".into());
        }
        mesh_api::ConfigSnapshot::new(config.parts.clone()).map_err(|e| e.to_string())?;
        self.got.lock().expect("lock").push(config.parts);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_client_applies_acks_and_nacks() {
    let c = Control::start().await;
    let token = c.token_file("istio-system", "ztunnel", Some("node-2"));
    let channel = mesh_xds::channel::channel(&c.target()).expect("channel");
    let client = mesh_xds::client::ConfigClient::new(channel, token, "node-2".into(), "ztunnel");
    let sink = Arc::new(TestSink::default());
    let (got, reject) = (sink.got.clone(), sink.reject.clone());
    let stop = CancellationToken::new();
    tokio::spawn(client.run(sink, stop.clone()));
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            for _ in 0..200 {
                if got.lock().expect("lock").len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no config #{n}");
        }
    };
    wait_for(1).await;
    let first = got.lock().expect("lock")[0].clone();
    assert_eq!(first.workloads.len(), 2);
    let policies: Vec<&str> = first
        .authorization_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(policies, ["db-deny"], "node-2 runs db only");
    // A NACKed update is not applied; the next good one is.
    reject.store(true, std::sync::atomic::Ordering::SeqCst);
    c.write("extra.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s2, namespace: shop}\nspec: {clusterIP: 10.96.0.2, ports: [{port: 81}]}\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().expect("lock").len(), 1);
    reject.store(false, std::sync::atomic::Ordering::SeqCst);
    c.write("extra2.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s3, namespace: shop}\nspec: {clusterIP: 10.96.0.3, ports: [{port: 82}]}\n");
    wait_for(2).await;
    let second = got.lock().expect("lock")[1].clone();
    let svcs: Vec<&str> = second.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        svcs,
        ["s2", "s3", "web"],
        "the NACKed change arrives with the next one"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_signs_only_identities_of_pods_on_the_callers_node() {
    let c = Control::start().await;
    let channel = mesh_xds::channel::channel(&c.target()).expect("channel");
    let ca = |token: PathBuf, node: &str| {
        mesh_xds::ca::CaClient::new(channel.clone(), token, node.into())
    };
    let z1 = c.token_file("istio-system", "ztunnel", Some("node-1"));
    let web: SpiffeId = "spiffe://cluster.local/ns/shop/sa/web".parse().expect("id");
    let db: SpiffeId = "spiffe://cluster.local/ns/shop/sa/db".parse().expect("id");

    let (cert, roots) = ca(z1.clone(), "node-1")
        .sign(&web)
        .await
        .expect("web runs on node-1");
    assert_eq!(cert.id(), &web);
    assert_eq!(roots.to_pem(), c.target().roots.to_pem());

    let status = |e: mesh_xds::ca::CaError| match e {
        mesh_xds::ca::CaError::Status(_, s) => s.code(),
        other => panic!("not a status: {other}"),
    };
    // db runs on node-2, not on the caller's node.
    let e = ca(z1.clone(), "node-1")
        .sign(&db)
        .await
        .expect_err("db is not on node-1");
    assert_eq!(status(e), tonic::Code::PermissionDenied);
    // The token is bound to node-1; asking as node-2 is refused.
    let e = ca(z1.clone(), "node-2")
        .sign(&db)
        .await
        .expect_err("token for another node");
    assert_eq!(status(e), tonic::Code::PermissionDenied);
    // A forged token.
    let forged = c.dir.path().join("forged");
    std::fs::write(&forged, "mesh1.e30.AAAA").expect("write");
    let e = ca(forged, "node-1")
        .sign(&web)
        .await
        .expect_err("bad token");
    assert_eq!(status(e), tonic::Code::Unauthenticated);
    // A workload may ask for its own identity only.
    let own = c.token_file("shop", "web", None);
    ca(own.clone(), "node-9")
        .sign(&web)
        .await
        .expect("own identity");
    let e = ca(own, "node-1")
        .sign(&db)
        .await
        .expect_err("someone else's identity");
    assert_eq!(status(e), tonic::Code::PermissionDenied);

    // Malformed CSR, and a CSR for another identity than the one asked for.
    let web_id = web.to_string();
    let token = std::fs::read_to_string(&z1).expect("token");
    let raw = |csr: String| {
        let (channel, token, identity) = (channel.clone(), token.clone(), web_id.clone());
        async move {
            let req = pb::SignRequest {
                csr,
                identity,
                node: "node-1".into(),
            };
            let req = mesh_xds::with_token(tonic::Request::new(req), &token).expect("token header");
            pb::certificates_client::CertificatesClient::new(channel)
                .sign(req)
                .await
        }
    };
    let e = raw(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
    )
    .await
    .expect_err("malformed");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let (db_csr, _) = mesh_identity::new_csr(&db).expect("csr");
    let e = raw(db_csr).await.expect_err("CSR names another identity");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
}

const WAYPOINT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Pod
metadata: {name: wp-1, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: wp}}
spec: {serviceAccountName: wp, nodeName: node-1, containers: [{name: waypoint}]}
status: {phase: Running, podIP: 10.1.0.9}
---
apiVersion: v1
kind: Service
metadata: {name: direct, namespace: shop, labels: {istio.io/use-waypoint: none}}
spec: {clusterIP: 10.96.0.5, selector: {app: db}, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-route, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: direct-route, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: direct, port: 80}]
  rules: [{backendRefs: [{name: direct, port: 80}]}]
---
apiVersion: waypoint.mesh.io/v1alpha1
kind: HTTPFault
metadata: {name: slow, namespace: shop}
spec: {delay: {fixedDelay: 1s}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other-ns, namespace: elsewhere}
spec: {hosts: [x]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waypoints_get_their_routes_and_policies_ztunnels_do_not() {
    let c = Control::start().await;
    // The waypoint file redefines the namespace with its waypoint label.
    c.write(
        "mesh.yaml",
        &MESH.replacen(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n",
            "",
            1,
        ),
    );
    c.write("waypoint.yaml", WAYPOINT);
    let wp_token = c.token_file("shop", "wp", None);
    // Give the file source time to pick both files up before subscribing.
    let mut resources = Vec::new();
    for _ in 0..100 {
        let (mut inbound, _tx) = raw_stream(&c, &wp_token, "shop/wp", "waypoint", vec![])
            .await
            .expect("waypoint stream");
        let first = tokio::time::timeout(WAIT, inbound.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("msg");
        resources = names(&first)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if resources.iter().any(|n| n.starts_with("l7/")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scoped: Vec<&str> = resources
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with("workload/") && !n.starts_with("service/"))
        .collect();
    // The route of the service it serves, the namespace's fault, policies and JWT rules; not the route of the
    // opted-out service, nor objects of other namespaces.
    assert_eq!(
        scoped,
        [
            "authz/shop/db-deny",
            "authz/shop/web-allow",
            "l7/httpfault/shop/slow",
            "l7/httproute/shop/web-route",
            "l7/requestauthentication/shop/jwt",
        ],
        "{resources:?}"
    );
    // Another service account may not subscribe as this waypoint.
    let other = c.token_file("shop", "web", None);
    let err = raw_stream(&c, &other, "shop/wp", "waypoint", vec![])
        .await
        .expect_err("not the waypoint's SA");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    // ztunnels never get L7 objects.
    let z = c.token_file("istio-system", "ztunnel", Some("node-1"));
    let (mut inbound, _tx) = raw_stream(&c, &z, "node-1", "ztunnel", vec![])
        .await
        .expect("ztunnel stream");
    let first = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("msg");
    assert!(
        names(&first).iter().all(|n| !n.starts_with("l7/")),
        "{:?}",
        names(&first)
    );
}
