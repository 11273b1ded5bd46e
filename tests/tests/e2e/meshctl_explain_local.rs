//! `meshctl ztunnel config` and `meshctl explain` on a local cluster (`meshctl local up`, real
//! control, agents, ztunnels and pods): the admin API of each node's ztunnel reached inside the
//! node netns from `--state`; control sends the policy only to the destination's node, so explain
//! must read that node's ztunnel too; its verdicts match what real connections get.
//!
//! Needs root and `cargo build -p meshctl -p ztunnel -p mesh-cni -p mesh-control -p mesh-testbed`.

#![allow(clippy::unwrap_used)]

use mesh_testbed::local::{LocalCluster, meshctl_bin, text};

fn app(meshctl: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: client, namespace: shop}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: other, namespace: shop}}
---
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: shop, labels: {{app: echo}}}}
spec:
  nodeName: node-2
  containers: [{{name: echo, command: ["{meshctl}", "echo", "--port", "8080"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: shop}}
spec:
  nodeName: node-1
  serviceAccountName: client
  containers: [{{name: sleep, command: ["sleep", "3600"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: other, namespace: shop}}
spec:
  nodeName: node-1
  serviceAccountName: other
  containers: [{{name: sleep, command: ["sleep", "3600"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: echo-from-client, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/shop/sa/client]}}}}]}}]
"#
    )
}

#[test]
fn explain_reads_the_source_and_destination_ztunnels_of_a_local_cluster() {
    let c = LocalCluster::started("explain", 2);
    c.apply("app.yaml", &app(&meshctl_bin().display().to_string()));

    // The ztunnels learn the enrolled pods from control.
    c.wait_until(
        "echo and client as HBONE workloads in node-2's ztunnel",
        || {
            let t = c.ok(&["ztunnel", "config", "node-2", "workloads"]);
            ["echo", "client", "other"].iter().all(|n| {
                t.lines()
                    .any(|l| l.split_whitespace().nth(1) == Some(n) && l.contains("HBONE"))
            })
        },
    );
    let services = c.ok(&["ztunnel", "config", "node-1", "services"]);
    assert!(
        services
            .lines()
            .any(|l| l.contains("echo") && l.contains("80->8080")),
        "{services}"
    );
    // Policies are node-scoped: only the destination's ztunnel has it.
    c.wait_until("the policy at node-2's ztunnel", || {
        c.ok(&["ztunnel", "config", "node-2", "policies"])
            .contains("echo-from-client")
    });
    let node1 = c.ok(&["ztunnel", "config", "node-1", "policies"]);
    assert!(!node1.contains("echo-from-client"), "{node1}");

    let allowed = c.ok(&["explain", "shop/client", "echo:80"]);
    assert!(allowed.contains("VERDICT:     ALLOW"), "{allowed}");
    assert!(
        allowed.contains("allowed by ALLOW policy shop/echo-from-client"),
        "{allowed}"
    );
    let denied = c.ok(&["explain", "shop/other", "echo.shop.svc.cluster.local:80"]);
    assert!(
        denied.contains("VERDICT:     DENY")
            && denied.contains("no ALLOW policy matched (tried shop/echo-from-client)"),
        "{denied}"
    );
    // Real connections agree.
    c.wait_until("client reaching echo", || {
        c.curl("shop/client", "http://echo/").is_some()
    });
    assert!(
        c.curl("shop/other", "http://echo/").is_none(),
        "other must be refused"
    );

    let out = c.meshctl(&["ztunnel", "config", "node-7"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("node-1, node-2"),
        "{err}"
    );
}
