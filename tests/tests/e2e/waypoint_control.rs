//! The waypoint fed by a real `mesh-control` (`--control`): control deploys nothing here, but it
//! computes the waypoint binding from a Gateway of class `istio-waypoint` and the service's
//! `istio.io/use-waypoint` label, and streams the HTTPRoute to the waypoint subscribed as
//! `default/waypoint`, whose certificate comes from control's CA; the route then applies to
//! traffic from an enrolled client.

use std::time::{Duration, Instant};

use mesh_testbed::mesh::{MeshBuilder, PodSpec};
use mesh_testbed::{Process, bin_path, l7};

const KUBE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default, labels: {istio.io/use-waypoint: waypoint}}
spec:
  clusterIP: 10.96.0.10
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: echo, port: 80}]
  rules:
  - filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-via, value: control}]}}]
    backendRefs: [{name: echo, port: 80}]
";

#[test]
fn waypoint_gets_routes_from_control() {
    let mut b = MeshBuilder::new("wpctl", 2).unwrap();
    b.with_control();
    let client = b.pod(1, PodSpec::new("client")).unwrap();
    let wp = b
        .pod(
            2,
            PodSpec::new("waypoint-7d9f8c6b5-abcde")
                .sa("waypoint")
                .label("gateway.networking.k8s.io/gateway-name", "waypoint")
                .outside(),
        )
        .unwrap();
    let echo = b
        .pod(
            2,
            PodSpec::new("echo-5c6d7e8f9-fghij")
                .sa("echo")
                .label("app", "echo"),
        )
        .unwrap();
    b.yaml(KUBE);
    let mesh = b.start().unwrap();
    let control = mesh.control().expect("control plane");
    // A token for the waypoint's service account (the Gateway's name).
    let key = control
        .root_file()
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("token.key");
    let out = std::process::Command::new(bin_path("mesh-control"))
        .args(["token", "--token-key"])
        .arg(&key)
        .args(["--service-account", "default/waypoint"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = mesh.dir().join("token-waypoint");
    std::fs::write(&token, out.stdout).unwrap();

    let _echo: Process =
        l7::start_echo(mesh.pod(echo), "default", 8080, &["--version", "v1"]).unwrap();
    let pod = mesh.pod(wp);
    let mut cmd = pod.command(bin_path("waypoint"));
    cmd.args(["--control", &control.addr(1), "--token-file"])
        .arg(&token)
        .arg("--control-ca")
        .arg(control.root_file())
        .args([
            "--namespace",
            "default",
            "--service-account",
            "waypoint",
            "--ip",
            &pod.ip.to_string(),
        ]);
    let mut waypoint = pod.netns.spawn_command("waypoint-control", cmd).unwrap();
    waypoint
        .wait_for_output("waypoint started", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", waypoint.stdout()));

    // The client's ztunnel learns the binding from control too: retry until the route applies.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = l7::curl(mesh.pod(client), "http://10.96.0.10/", &[]);
        if let Ok(r) = &r
            && r.status == 200
            && r.header("x-via") == Some("control")
        {
            assert!(r.pod().starts_with("echo-"), "{}", r.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{r:?}\n--- waypoint:\n{}\n--- control:\n{}",
            waypoint.stdout(),
            control.process().map(|p| p.stdout()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
