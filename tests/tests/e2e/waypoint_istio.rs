//! Istio routing kinds on the waypoint end to end: a VirtualService (header canary to a subset,
//! fault delay and abort with percentages, timeout, 50/50 weights) with DestinationRule subsets,
//! and DestinationRule circuit breaking (connection-pool overflow answered 503).

use std::time::{Duration, Instant};

use mesh_testbed::l7::{ECHO_SERVICES, EchoSpec, L7Mesh};

fn services() -> String {
    format!(
        "{ECHO_SERVICES}  - {{name: slow, namespace: default, vips: [10.96.0.13], selector: {{app: slow}}, waypoint: {{address: WAYPOINT}},
     ports: [{{port: 80, targetPort: 8080, appProtocol: http}}]}}
"
    )
}

const ISTIO: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 80}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 0.5s
    route: [{destination: {host: echo, subset: v3}}]
  - route:
    - {destination: {host: echo, subset: v1}, weight: 50}
    - {destination: {host: echo, subset: v2}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: default}
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
";

#[test]
fn virtual_service_and_destination_rule_behave_as_istio_documents() {
    let backends = vec![
        EchoSpec::new("echo-v1-aaa-bbb", "echo", "v1"),
        EchoSpec::new("echo-v2-ccc-ddd", "echo", "v2"),
        EchoSpec::new("echo-v3-eee-fff", "echo", "v3").args(&["--delay-ms", "1500"]),
        EchoSpec::new("slow-ggg-hhh", "slow", "slow").args(&["--delay-ms", "1000"]),
    ];
    let m = L7Mesh::start("wpist", &backends, &services()).unwrap();
    m.waypoint.apply_routes("istio.yaml", ISTIO).unwrap();
    let ctx = |s: &str| format!("{s}\nwaypoint log:\n{}", m.waypoint.logs());

    // Header canary with a 1 s delay for jason only.
    let start = Instant::now();
    let r = m
        .curl("http://10.96.0.10/reviews", &["-H", "end-user: jason"])
        .unwrap();
    assert_eq!(r.status, 200, "{}", ctx(&r.body));
    assert!(r.pod().starts_with("echo-v2"), "{}", r.body);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "delayed: {:?}",
        start.elapsed()
    );

    // Everyone else: 50/50 between v1 and v2, never v3.
    let answers = m.batch("http://10.96.0.10/reviews", 100, &[]).unwrap();
    let v1 = answers
        .iter()
        .filter(|(_, p)| p.starts_with("echo-v1"))
        .count();
    let v2 = answers
        .iter()
        .filter(|(_, p)| p.starts_with("echo-v2"))
        .count();
    assert_eq!(v1 + v2, 100, "{answers:?}");
    assert!((30..=70).contains(&v1), "{v1} of 100 to v1");

    // Abort 80%: Binomial(100, 0.8) stays in 60..=96.
    let aborts = m.batch("http://10.96.0.10/abort", 100, &[]).unwrap();
    let n500 = aborts.iter().filter(|(c, _)| *c == 500).count();
    assert!((60..=96).contains(&n500), "{n500} of 100 aborted");

    // Timeout 0.5 s against a 1.5 s backend: 504.
    let start = Instant::now();
    let r = m.curl("http://10.96.0.10/slow", &[]).unwrap();
    assert_eq!(r.status, 504, "{}", ctx(&r.body));
    assert!(start.elapsed() < Duration::from_millis(1400));

    // Circuit breaking: at most 2 in flight to `slow` (1 connection + 1 pending); 6 at once
    // against a 1 s backend overflow.
    let url = "http://10.96.0.13/";
    let mut args = vec![
        "-s",
        "-w",
        "%{http_code}\n",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "6",
    ];
    for _ in 0..6 {
        args.extend(["-o", "/dev/null", url]);
    }
    let out = m
        .client()
        .netns
        .run_timeout("curl", &args, Duration::from_secs(30))
        .unwrap();
    let codes: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(codes.len(), 6, "{out:?}");
    let ok = codes.iter().filter(|c| **c == "200").count();
    let overflow = codes.iter().filter(|c| **c == "503").count();
    assert!((1..=2).contains(&ok) && ok + overflow == 6, "{codes:?}");
    let metrics = m.waypoint.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"UO\"")),
        "{metrics}"
    );
}

/// Outlier detection: an endpoint answering 503 is ejected after one error, so later requests
/// (no retries) all reach the healthy one; the `reviews` example of Istio's task with
/// `consecutive5xxErrors: 1`.
#[test]
fn outlier_detection_ejects_a_failing_endpoint() {
    let backends = vec![
        EchoSpec::new("echo-v1-aaa-bbb", "echo", "v1"),
        EchoSpec::new("echo-v2-ccc-ddd", "echo", "v2").args(&["--status", "503"]),
    ];
    let m = L7Mesh::start("wpout", &backends, ECHO_SERVICES).unwrap();
    let yaml = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - retries: {attempts: 0}
    route: [{destination: {host: echo}}]
";
    m.waypoint.apply_routes("outlier.yaml", yaml).unwrap();
    // Round robin reaches the failing endpoint within the first two requests; after that one
    // 503 it is ejected.
    let first = m.batch("http://10.96.0.10/", 2, &[]).unwrap();
    assert_eq!(
        first.iter().filter(|(c, _)| *c == 503).count(),
        1,
        "{first:?}"
    );
    let rest = m.batch("http://10.96.0.10/", 30, &[]).unwrap();
    assert!(
        rest.iter()
            .all(|(c, p)| *c == 200 && p.starts_with("echo-v1")),
        "{rest:?}"
    );
    let logs = m.waypoint.logs_when(|l| l.contains("outlier ejected"));
    assert!(logs.contains("outlier ejected"), "{logs}");
}
