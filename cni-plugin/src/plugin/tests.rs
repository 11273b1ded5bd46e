use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixListener;

use super::*;

const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.1.0.7/24","gateway":"10.1.0.1","interface":1}],"dns":{}}"#;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn add_env(extra_args: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", "ADD".into()),
        ("CNI_CONTAINERID", "c1".into()),
        ("CNI_NETNS", "/var/run/netns/x".into()),
        ("CNI_IFNAME", "eth0".into()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns;K8S_POD_UID=u1{extra_args}"
            ),
        ),
    ]
}

fn run_with(pairs: &[(&'static str, String)], stdin: &str) -> Output {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(env(&borrowed), stdin.as_bytes())
}

fn conf(version: &str, socket: &std::path::Path, prev: Option<&str>) -> String {
    let prev = prev
        .map(|p| format!(",\"prevResult\":{p}"))
        .unwrap_or_default();
    format!(
        r#"{{"cniVersion":"{version}","name":"k8s","type":"mesh-cni","agentSocket":"{}","timeoutMs":2000{prev}}}"#,
        socket.display()
    )
}

fn error_code(out: &Output) -> u64 {
    assert_eq!(out.exit_code, 1, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("error JSON");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v["code"].as_u64().expect("code")
}

#[test]
fn malformed_input_gets_the_spec_error_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("none.sock");
    let good = conf("1.0.0", &sock, Some(PREV));
    // Bad JSON.
    assert_eq!(error_code(&run_with(&add_env(""), "{not json")), 6);
    // Missing environment.
    assert_eq!(error_code(&run(env(&[]), good.as_bytes())), 4);
    assert_eq!(
        error_code(&run(env(&[("CNI_COMMAND", "ADD")]), good.as_bytes())),
        4
    );
    assert_eq!(
        error_code(&run(env(&[("CNI_COMMAND", "FROB")]), good.as_bytes())),
        4
    );
    // Unknown version.
    let out = run_with(&add_env(""), &conf("9.9.9", &sock, Some(PREV)));
    assert_eq!(error_code(&out), 1);
    assert!(
        out.stdout.contains("1.0.0"),
        "names the supported versions: {}",
        out.stdout
    );
    // Chained plugin without prevResult.
    assert_eq!(
        error_code(&run_with(&add_env(""), &conf("1.0.0", &sock, None))),
        7
    );
    // Bad CNI_ARGS.
    let mut bad_args = add_env("");
    bad_args[4].1 = "K8S_POD_NAME".into();
    assert_eq!(error_code(&run_with(&bad_args, &good)), 4);
}

#[test]
fn version_lists_supported_versions() {
    let out = run(env(&[("CNI_COMMAND", "VERSION")]), b"");
    assert_eq!(out.exit_code, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let versions: Vec<&str> = v["supportedVersions"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        versions.contains(&"0.4.0") && versions.contains(&"1.0.0"),
        "{v}"
    );
}

#[test]
fn add_fails_when_the_agent_is_unreachable_and_del_still_succeeds() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("none.sock");
    let out = run_with(&add_env(""), &conf("1.0.0", &sock, Some(PREV)));
    assert_eq!(error_code(&out), 11, "retryable in 1.0.0");
    let out = run_with(&add_env(""), &conf("0.4.0", &sock, Some(PREV)));
    assert_eq!(error_code(&out), 5, "0.4.0 has no code 11");
    let mut del = add_env("");
    del[0].1 = "DEL".into();
    let out = run_with(&del, &conf("1.0.0", &sock, None));
    assert_eq!(
        out,
        Output {
            stdout: String::new(),
            exit_code: 0
        }
    );
    let status = run(
        env(&[("CNI_COMMAND", "STATUS")]),
        conf("1.1.0", &sock, None).as_bytes(),
    );
    assert_eq!(error_code(&status), 50);
}

#[test]
fn non_kubernetes_containers_pass_through_untouched() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("none.sock");
    let mut pairs = add_env("");
    pairs[4].1 = String::new();
    let out = run_with(&pairs, &conf("1.0.0", &sock, Some(PREV)));
    assert_eq!(
        out,
        Output {
            stdout: PREV.into(),
            exit_code: 0
        }
    );
}

/// A peer on the agent socket that answers one request with `reply` and returns the request.
fn one_shot_agent(sock: &std::path::Path, reply: CniReply) -> std::thread::JoinHandle<CniRequest> {
    let listener = UnixListener::bind(sock).expect("bind");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let line = protocol::read_line(&mut BufReader::new(&stream)).expect("request");
        let req: CniRequest = serde_json::from_slice(&line).expect("decode");
        (&stream)
            .write_all(&protocol::encode_line(&reply).expect("encode"))
            .expect("reply");
        req
    })
}

#[test]
fn add_sends_the_pod_and_passes_prev_result_through_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("agent.sock");
    let agent = one_shot_agent(&sock, CniReply::Enrolled);
    let out = run_with(&add_env(""), &conf("1.0.0", &sock, Some(PREV)));
    assert_eq!(
        out,
        Output {
            stdout: PREV.into(),
            exit_code: 0
        }
    );
    let CniRequest::Add(pod) = agent.join().expect("agent") else {
        panic!("expected Add")
    };
    assert_eq!(
        (pod.uid.as_str(), pod.name.as_str(), pod.namespace.as_str()),
        ("u1", "p", "ns")
    );
    assert_eq!(
        pod.ips,
        vec!["10.1.0.7".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(pod.netns, std::path::PathBuf::from("/var/run/netns/x"));

    // An agent error fails the ADD.
    std::fs::remove_file(&sock).expect("rm");
    let agent = one_shot_agent(
        &sock,
        CniReply::Error {
            message: "ztunnel refused".into(),
            retry: false,
        },
    );
    let out = run_with(&add_env(""), &conf("1.0.0", &sock, Some(PREV)));
    assert_eq!(error_code(&out), 5);
    assert!(out.stdout.contains("ztunnel refused"), "{}", out.stdout);
    agent.join().expect("agent");
}

#[test]
fn prev_result_ips_of_old_and_new_versions() {
    let v04 = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"br"},{"name":"eth0","sandbox":"/x"}],
        "ips":[{"version":"4","address":"10.9.0.3/16","interface":1},{"version":"4","address":"10.9.0.1/16","interface":0}]}"#;
    let ips = config::pod_ips(v04).expect("ips");
    assert_eq!(
        ips,
        vec!["10.9.0.3".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert!(config::pod_ips(r#"{"ips":[{"address":"nope/3"}]}"#).is_err());
    assert!(config::pod_ips("{}").expect("empty").is_empty());
}
