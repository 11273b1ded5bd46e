use std::net::TcpListener;

use serde_json::json;

use super::*;

fn pod(probe: Value) -> Value {
    json!({"kind": "Pod", "spec": {"containers": [
        {"name": "app", "ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": probe},
        {"name": "side"}
    ]}})
}

#[test]
fn parses_http_and_tcp_probes_with_kubernetes_defaults_and_named_ports() {
    let p = readiness_probes(&pod(json!({"httpGet": {"path": "/ready", "port": "http"}}))).unwrap();
    assert_eq!(p.len(), 1, "only containers with a probe");
    assert_eq!(
        p[0],
        ProbeSpec {
            container: "app".into(),
            action: Action::Http {
                port: 8080,
                path: "/ready".into(),
                headers: vec![]
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    );
    let p = readiness_probes(&pod(
        json!({"tcpSocket": {"port": 9000}, "initialDelaySeconds": 2,
        "periodSeconds": 1, "successThreshold": 2, "failureThreshold": 1, "timeoutSeconds": 3}),
    ))
    .unwrap();
    assert_eq!(p[0].action, Action::Tcp { port: 9000 });
    assert_eq!(
        (p[0].initial_delay, p[0].period, p[0].timeout),
        (
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_secs(3)
        )
    );
    assert_eq!((p[0].success_threshold, p[0].failure_threshold), (2, 1));
    assert!(
        readiness_probes(&json!({"kind": "Pod"}))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn unusable_probes_are_errors_naming_the_container() {
    for (probe, want) in [
        (
            json!({"exec": {"command": ["true"]}}),
            "only httpGet and tcpSocket",
        ),
        (json!({"httpGet": {"port": "nope"}}), "names no port"),
        (json!({"tcpSocket": {"port": 0}}), "not a port"),
        (
            json!({"httpGet": {"port": 80, "scheme": "HTTPS"}}),
            "scheme",
        ),
        (
            json!({"httpGet": {"port": 80, "path": "no-slash"}}),
            "must start with /",
        ),
        (
            json!({"tcpSocket": {"port": 80}, "periodSeconds": 0}),
            "periodSeconds",
        ),
    ] {
        let e = readiness_probes(&pod(probe)).unwrap_err().to_string();
        assert!(e.contains("\"app\"") && e.contains(want), "{want}: {e}");
    }
}

fn spec(success: u32, failure: u32) -> ProbeSpec {
    ProbeSpec {
        container: "app".into(),
        action: Action::Tcp { port: 1 },
        initial_delay: Duration::from_secs(5),
        period: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        success_threshold: success,
        failure_threshold: failure,
    }
}

#[test]
fn the_first_probe_waits_for_the_initial_delay_then_one_per_period() {
    let t0 = Instant::now();
    let mut s = ProbeState::new(spec(1, 3), t0);
    assert!(!s.ready(), "unready until a probe passes");
    assert!(!s.due(t0 + Duration::from_secs(4)));
    assert!(s.due(t0 + Duration::from_secs(5)));
    s.started(t0 + Duration::from_secs(5));
    assert!(!s.due(t0 + Duration::from_secs(6)));
    assert!(s.due(t0 + Duration::from_secs(7)));
}

#[test]
fn thresholds_count_consecutive_results() {
    let mut s = ProbeState::new(spec(2, 3), Instant::now());
    assert!(!s.record(true));
    assert!(!s.record(false), "a failure resets the passes");
    assert!(!s.record(true));
    assert!(s.record(true), "two passes in a row: ready");
    assert!(s.ready());
    assert!(!s.record(false) && !s.record(false));
    assert!(!s.record(true), "a pass resets the failures");
    assert!(!s.record(false) && !s.record(false));
    assert!(s.record(false), "three failures in a row: unready");
    assert!(!s.ready());
}

fn serve_once(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap();
        c.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    (port, h)
}

#[test]
fn http_probes_pass_on_2xx_and_3xx_only_and_send_path_and_headers() {
    let lo = Ipv4Addr::LOCALHOST;
    let t = Duration::from_secs(2);
    for (status, pass) in [
        ("200 OK", true),
        ("302 Found", true),
        ("404 Not Found", false),
        ("503 Busy", false),
    ] {
        let (port, h) = serve_once(status);
        let action = Action::Http {
            port,
            path: "/ready?x=1".into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        };
        assert_eq!(check(&action, lo, t).is_ok(), pass, "{status}");
        let req = h.join().unwrap();
        assert!(
            req.starts_with("GET /ready?x=1 HTTP/1.1\r\n") && req.contains("X-Probe: yes\r\n"),
            "{req}"
        );
    }
    let listening = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listening.local_addr().unwrap().port();
    assert!(check(&Action::Tcp { port }, lo, t).is_ok());
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = check(&Action::Tcp { port: closed }, lo, t).unwrap_err();
    assert!(e.contains("connect"), "{e}");
}
