//! Unit tests of the sandbox: container environment, phases and the status's shape.

use super::*;

fn sandbox(policy: &str, exits: &[Option<i32>]) -> Sandbox {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "namespace": "n", "uid": "u1"},
        "spec": {"nodeName": "node-2", "serviceAccountName": "sa",
            "containers": [{"name": "c", "command": ["x"], "args": ["--y"],
                "env": [{"name": "A", "value": "1"}, {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}});
    let ctx = Ctx {
        dir: "/tmp/x".into(),
        id: "ab".into(),
        nodes: 2,
        path_env: "/bin".into(),
    };
    let run = PodRun {
        key: Key::of(&pod),
        uid: "u1".into(),
        node: 2,
        netns: "meshctl-ab-pod-n-a".into(),
        ip: std::net::Ipv4Addr::new(10, 2, 0, 7),
        pod: pod.clone(),
        running: false,
    };
    let mut containers = containers(&ctx, &pod, &run);
    for (c, exit) in containers.iter_mut().zip(exits) {
        c.last_exit = *exit;
        c.next_start = None;
    }
    Sandbox {
        run,
        cni_result: Value::Null,
        containers,
        restart_policy: policy.into(),
        start_time: "2026-01-01T00:00:00Z".into(),
        log: "/tmp/x.log".into(),
        grace: DEFAULT_GRACE,
    }
}

#[test]
fn containers_get_command_args_and_the_pod_environment() {
    let sb = sandbox("Always", &[None]);
    let c = &sb.containers[0];
    assert_eq!(c.argv, ["x", "--y"]);
    let env: std::collections::BTreeMap<&str, &str> = c
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env["POD_NAME"], "a");
    assert_eq!(env["POD_NAMESPACE"], "n");
    assert_eq!(env["POD_IP"], "10.2.0.7");
    assert_eq!(env["SERVICE_ACCOUNT"], "sa");
    assert_eq!(env["NODE_NAME"], "node-2");
    assert_eq!(env["PATH"], "/bin");
    assert_eq!((env["A"], env["IP"]), ("1", "10.2.0.7"));
}

#[test]
fn phases_follow_exits_and_the_status_is_a_valid_kubernetes_pod_status() {
    assert_eq!(sandbox("Never", &[Some(0)]).phase(), "Succeeded");
    assert_eq!(sandbox("Never", &[Some(3)]).phase(), "Failed");
    let mut c = sandbox("OnFailure", &[Some(1)]);
    schedule_restart(&mut c.containers[0], "OnFailure");
    assert_eq!(c.phase(), "Running", "waiting to restart");
    assert_eq!(c.containers[0].restarts, 1);
    let mut never = sandbox("Never", &[Some(1)]);
    schedule_restart(&mut never.containers[0], "Never");
    assert_eq!(never.phase(), "Failed");
    // control parses pods with k8s-openapi: the status must fit its types.
    let status = c.status(false);
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "status": status})).unwrap();
    let st = pod.status.unwrap();
    assert_eq!(st.pod_ip.as_deref(), Some("10.2.0.7"));
    assert_eq!(st.host_ip.as_deref(), Some("172.30.0.2"));
    assert_eq!(st.container_statuses.unwrap()[0].restart_count, 1);
}
