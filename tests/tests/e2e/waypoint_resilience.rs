//! The waypoint's resilience features end to end (client pod -> ztunnel -> waypoint -> ztunnel ->
//! echo): request timeouts, retries on status codes (and `attempts: 0` turning them off), fault
//! injection with our `HTTPFault` extension, gRPC through a GRPCRoute, and malformed requests.

use std::time::{Duration, Instant};

use mesh_testbed::l7::{ECHO_SERVICES, EchoSpec, L7Mesh};

fn services() -> String {
    format!(
        "{ECHO_SERVICES}  - {{name: slow, namespace: default, vips: [10.96.0.13], selector: {{app: slow}}, waypoint: {{address: WAYPOINT}},
     ports: [{{port: 80, targetPort: 8080, appProtocol: http}}]}}
"
    )
}

fn backends() -> Vec<EchoSpec> {
    vec![
        EchoSpec::new("echo-v1-aaa-bbb", "echo", "v1"),
        // Answers every HTTP request with 503 (gRPC calls still succeed).
        EchoSpec::new("echo-v2-ccc-ddd", "echo", "v2").args(&["--status", "503"]),
        EchoSpec::new("slow-eee-fff", "slow", "slow").args(&["--delay-ms", "1500"]),
    ]
}

const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: slow}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /timeout}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: slow, port: 80}]
  - backendRefs: [{name: slow, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {attempts: 4, codes: [503], backoff: 10ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /noretry}}]
    retry: {attempts: 0}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /fault}}]
    filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: abort-jason}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /half}}]
    filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: abort-half}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /delay}}]
    filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: delay-1s}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /no-such-fault}}]
    filters: [{type: ExtensionRef, extensionRef: {group: waypoint.mesh.io, kind: HTTPFault, name: missing}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80}]
---
apiVersion: waypoint.mesh.io/v1alpha1
kind: HTTPFault
metadata: {name: abort-jason, namespace: default}
spec:
  abort: {httpStatus: 418, percentage: 100}
  headers: [{name: end-user, value: jason}]
---
apiVersion: waypoint.mesh.io/v1alpha1
kind: HTTPFault
metadata: {name: abort-half, namespace: default}
spec:
  abort: {httpStatus: 500, percentage: 50}
---
apiVersion: waypoint.mesh.io/v1alpha1
kind: HTTPFault
metadata: {name: delay-1s, namespace: default}
spec:
  delay: {fixedDelay: 1s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 7070}]
  rules:
  - matches: [{method: {service: proto.EchoTestService, method: Echo}}]
    backendRefs:
    - {name: echo-v1, port: 7070, weight: 80}
    - {name: echo-v2, port: 7070, weight: 20}
    - {name: echo-v3, port: 7070, weight: 0}
";

fn count(answers: &[(u16, String)], code: u16) -> usize {
    answers.iter().filter(|(c, _)| *c == code).count()
}

#[test]
fn timeouts_retries_faults_and_grpc() {
    let m = L7Mesh::start("wpres", &backends(), &services()).unwrap();
    m.waypoint.apply_routes("routes.yaml", ROUTES).unwrap();
    let ctx = |what: String| format!("{what}\nwaypoint log:\n{}", m.waypoint.logs());

    // Request timeout: the slow backend takes 1.5 s, the route allows 0.5 s.
    let start = Instant::now();
    let r = m.curl("http://10.96.0.13/timeout", &[]).unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}", ctx(r.body.clone()));
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        took < Duration::from_millis(1400),
        "timed out after {took:?}"
    );
    // Without a timeout the slow answer arrives.
    assert_eq!(m.curl("http://10.96.0.13/", &[]).unwrap().status, 200);

    // Retries on 503 reach the healthy endpoint every time; with attempts: 0 they are off.
    let with = m.batch("http://10.96.0.10/retry", 30, &[]).unwrap();
    assert_eq!(count(&with, 200), 30, "{}", ctx(format!("{with:?}")));
    let without = m.batch("http://10.96.0.10/noretry", 30, &[]).unwrap();
    let failed = count(&without, 503);
    assert!(
        failed > 0 && failed < 30,
        "about half must fail without retries: {without:?}"
    );

    // Fault injection: abort only for the matching header.
    let r = m
        .curl("http://10.96.0.10/fault", &["-H", "end-user: jason"])
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (418, "fault filter abort"));
    let r = m
        .curl("http://10.96.0.10/fault", &["-H", "end-user: bob"])
        .unwrap();
    assert_eq!(r.status, 200);
    // 50% aborts: Binomial(100, 0.5) stays within 25..75 (5 sd).
    let half = m.batch("http://10.96.0.10/half", 100, &[]).unwrap();
    let aborted = count(&half, 500);
    assert!((25..=75).contains(&aborted), "{aborted} of 100 aborted");
    assert_eq!(aborted + count(&half, 200), 100);
    // Delay: answered, after the delay.
    let start = Instant::now();
    let r = m.curl("http://10.96.0.10/delay", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    // A filter naming a fault that does not exist must not be skipped: 500.
    assert_eq!(
        m.curl("http://10.96.0.10/no-such-fault", &[])
            .unwrap()
            .status,
        500
    );

    // gRPC (h2c) through the waypoint, split 80/20 by a GRPCRoute, the zero-weight backend unused.
    let grpc = [
        "--http2-prior-knowledge",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "--data-binary",
        "",
    ];
    let url = "http://10.96.0.10:7070/proto.EchoTestService/Echo";
    let r = m.curl(url, &grpc).unwrap();
    assert_eq!(r.status, 200, "{}", ctx(r.body.clone()));
    let json_start = r.body.find('{').unwrap_or(0);
    let j: serde_json::Value = serde_json::Deserializer::from_str(&r.body[json_start..])
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    assert_eq!(j["path"], "/proto.EchoTestService/Echo", "{}", r.body);
    assert_eq!(j["proto"], "HTTP/2.0", "gRPC stays HTTP/2 upstream");
    let mut v1 = 0;
    for _ in 0..40 {
        let r = m.curl(url, &grpc).unwrap();
        assert_eq!(r.status, 200);
        if r.body.contains("echo-v1-") {
            v1 += 1;
        } else {
            assert!(r.body.contains("echo-v2-"), "{}", r.body);
        }
    }
    // Binomial(40, 0.8): sd 2.5; 22..=40 is over 4 sd below.
    assert!((22..40).contains(&v1), "{v1} of 40 to v1");
    let metrics = m.waypoint.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("request_protocol=\"grpc\"")
                && l.contains("grpc_response_status=\"0\"")),
        "{metrics}"
    );
}

#[test]
fn malformed_and_smuggling_requests_are_rejected() {
    let m = L7Mesh::start("wpbad", &backends()[..1], &services()).unwrap();
    let send = |data: &str| {
        let out = m
            .client()
            .netns
            .run_timeout(
                mesh_testbed::bin_path("mesh-testapp"),
                &[
                    "send",
                    "--to",
                    "10.96.0.10:80",
                    "--data",
                    data,
                    "--timeout-ms",
                    "5000",
                ],
                Duration::from_secs(10),
            )
            .unwrap();
        out.stdout
    };
    // Conflicting framing (Content-Length and Transfer-Encoding): 400, never forwarded.
    let smuggle = "POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: echo\r\n\r\n";
    let reply = send(smuggle);
    assert!(
        reply.starts_with("HTTP/1.1 400"),
        "{reply:?}\n{}",
        m.waypoint.logs()
    );
    assert!(
        !reply.contains("\"pod\""),
        "nothing reached the backend: {reply}"
    );
    // Two different Content-Length values: 400.
    let reply =
        send("POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    // A header block over the 64 KiB limit: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: echo\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let reply = send(&big);
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{:?}",
        &reply[..reply.len().min(200)]
    );
    // A well-formed request on the same port still works.
    let reply = send("GET /ok HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
}
