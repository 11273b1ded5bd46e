//! End-to-end test of local mode's services networking (DESIGN.md 7) through the real `meshctl`
//! binary: a Service gets a VIP from the service CIDR; a non-enrolled client reaches it by every
//! DNS name form (cluster DNS + per-pod resolv.conf) through the node's kube-proxy-like DNAT, with
//! both replicas answering (one on the client's own node bridge, one across the fabric); a pod
//! whose readiness probe fails is selected but never an endpoint; an enrolled (ambient) client
//! reaches the same name through ztunnel, and an enrolled pod's probe passes; `down` leaves no
//! namespace, no process and no `/etc/netns` directory.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use mesh_testbed::local::{
    LocalCluster, etc_netns_with, in_netns, is_root, meshctl_bin, name_starts_with, netns_with,
    pod_ready as ready, text,
};

fn manifests(meshctl: &Path) -> String {
    let m = meshctl.display();
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: svc-e2e}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: svc-e2e}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: echo
        image: ignored
        command: ["{m}", echo, --port, "8080"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: unready, namespace: svc-e2e, labels: {{app: web}}}}
spec:
  nodeName: node-2
  containers:
  - name: echo
    image: ignored
    command: ["{m}", echo, --port, "8080"]
    readinessProbe:
      tcpSocket: {{port: 9999}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: svc-e2e}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: svc-e2e}}
spec:
  nodeName: node-1
  containers:
  - {{name: c, image: ignored, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: svc-e2e-mesh, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: svc-e2e-mesh}}
spec:
  nodeName: node-1
  containers:
  - {{name: c, image: ignored, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: probed, namespace: svc-e2e-mesh}}
spec:
  nodeName: node-2
  containers:
  - name: echo
    image: ignored
    command: ["{m}", echo, --port, "8080"]
    readinessProbe:
      httpGet: {{path: /ready, port: 8080}}
      periodSeconds: 1
"#
    )
}

#[test]
fn services_resolve_by_dns_and_reach_only_ready_replicas_through_dnat_and_through_ztunnel() {
    if !is_root() {
        eprintln!("skipped: local mode needs root");
        return;
    }
    let c = LocalCluster::started("services", 2);
    let id = c.id();
    let file = c.manifest("app.yaml", &manifests(&meshctl_bin()));
    c.apply_file(&file);

    // The VIP comes from the service CIDR and is what control and `get services` see.
    let svcs: serde_json::Value =
        serde_json::from_str(&c.ok(&["local", "get", "services", "-o", "json"])).unwrap();
    let vip = svcs["items"][0]["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(vip.starts_with("10.255."), "{vip}");
    // Re-applying keeps it.
    c.apply_file(&file);
    let svcs: serde_json::Value =
        serde_json::from_str(&c.ok(&["local", "get", "services", "-o", "json"])).unwrap();
    assert_eq!(svcs["items"][0]["spec"]["clusterIP"], vip.as_str());
    // Asking for an address another service holds is a clear error, and nothing is applied.
    let clash = c.manifest(
        "clash.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: other, namespace: svc-e2e}}\n\
             spec: {{clusterIP: {vip}, selector: {{app: web}}, ports: [{{port: 81}}]}}\n"
        ),
    );
    let out = c.meshctl(&["local", "apply", "-f", &clash]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already allocated to Service svc-e2e/web"),
        "{}",
        text(&out.stderr)
    );
    let svcs: serde_json::Value =
        serde_json::from_str(&c.ok(&["local", "get", "services", "-o", "json"])).unwrap();
    assert_eq!(svcs["items"].as_array().unwrap().len(), 1);

    c.wait_until("both web replicas ready and the clients running", || {
        let pods = c.pods();
        let web_ready = pods
            .iter()
            .filter(|p| name_starts_with(p, "web-") && ready(p))
            .count();
        let clients = pods
            .iter()
            .filter(|p| p["metadata"]["name"] == "client" && p["status"]["phase"] == "Running")
            .count();
        web_ready == 2 && clients == 2
    });
    let pods = c.pods();
    let unready = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "unready")
        .unwrap();
    assert!(
        !ready(unready),
        "the failing probe keeps it unready: {unready}"
    );
    assert_eq!(unready["status"]["phase"], "Running");
    // Pinned pods leave one replica per node: one shares the client's node bridge, one is
    // across the fabric.
    let nodes: BTreeSet<&str> = pods
        .iter()
        .filter(|p| name_starts_with(p, "web-"))
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(nodes.len(), 2, "replicas spread over both nodes");
    let web: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("web-"))
        .map(str::to_owned)
        .collect();

    // Ready is written one runtime tick before the DNAT tables follow (as endpoints lag readiness
    // in Kubernetes): wait for the first answer, then every request must succeed.
    c.wait_until("the service answering", || {
        c.echo_pod("svc-e2e/client", "http://web.svc-e2e/")
            .is_some()
    });
    // Every name form, from the non-enrolled client, through DNS and the node's DNAT.
    let mut answered = BTreeSet::new();
    for url in [
        "http://web.svc-e2e/",
        "http://web/",
        "http://web.svc-e2e.svc/",
        "http://web.svc-e2e.svc.cluster.local/",
    ] {
        for _ in 0..6 {
            let pod = c.echo_pod("svc-e2e/client", url);
            let pod = pod
                .unwrap_or_else(|| panic!("{url}: no answer; runtime log:\n{}", c.log("runtime")));
            assert!(
                web.contains(&pod),
                "{url} answered by {pod}, not a ready replica"
            );
            answered.insert(pod);
        }
    }
    // Both replicas answer (random spread: keep asking until both did, bounded).
    for _ in 0..40 {
        if answered.len() == 2 {
            break;
        }
        answered.extend(c.echo_pod("svc-e2e/client", "http://web.svc-e2e/"));
    }
    assert_eq!(answered, web, "both replicas answer");
    // The VIP itself, and an unknown name fails to resolve.
    assert!(
        c.echo_pod("svc-e2e/client", &format!("http://{vip}/"))
            .is_some()
    );
    let out = c.exec("svc-e2e/client", &["getent", "hosts", "nope.svc-e2e"]);
    assert!(!out.status.success(), "unknown names do not resolve");
    let out = c.exec("svc-e2e/client", &["getent", "hosts", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = text(&out.stdout);
    assert!(out.starts_with(&format!("{vip} ")), "{out}");

    // The unready pod is in no node's DNAT table.
    let unready_ip = unready["status"]["podIP"].as_str().unwrap();
    for n in 1..=2 {
        let ns = c.node_netns(n);
        let out = in_netns(&ns, &["nft", "list", "table", "ip", "meshctl_services"]);
        let table = text(&out.stdout);
        assert!(
            table.contains(&vip) && !table.contains(unready_ip),
            "{ns}: {table}"
        );
    }

    // From an enrolled namespace: the same name works, through ztunnel.
    c.wait_until("the enrolled client marked for redirection", || {
        c.pods().iter().any(|p| {
            p["metadata"]["namespace"] == "svc-e2e-mesh"
                && p["metadata"]["annotations"]["ambient.istio.io/redirection"] == "enabled"
        })
    });
    for _ in 0..4 {
        let pod = c
            .echo_pod("svc-e2e-mesh/client", "http://web.svc-e2e/")
            .unwrap();
        assert!(web.contains(&pod), "{pod}");
    }
    // Probes of an enrolled pod (from the node netns, SNATed past ztunnel) pass too.
    c.wait_until("the enrolled probed pod ready", || {
        c.pods().iter().any(|p| {
            p["metadata"]["namespace"] == "svc-e2e-mesh"
                && p["metadata"]["name"] == "probed"
                && ready(p)
        })
    });
    c.wait_log(
        "ztunnel-node-1",
        "the enrolled client's connections logged by its ztunnel",
        |zlog| {
            zlog.contains("dst.service=\"web.svc-e2e.svc.cluster.local\"")
                && zlog.contains("direction=\"outbound\"")
        },
    );

    // down leaves nothing: no namespace, no /etc/netns dir of the cluster.
    let prefix = format!("meshctl-{id}-");
    let etc = etc_netns_with(&prefix);
    assert_eq!(etc.len(), 6, "one resolv.conf dir per pod: {etc:?}");
    let down = c.down();
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    let left = netns_with("");
    assert!(!left.iter().any(|n| n.contains(&prefix)), "{left:?}");
    let etc_left = etc_netns_with(&prefix);
    assert!(
        etc_left.is_empty(),
        "down removed every /etc/netns dir of the cluster: {etc_left:?}"
    );
    assert!(!c.state_dir().join("state.json").exists());
}
