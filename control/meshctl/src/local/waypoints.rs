//! Waypoints of a local cluster: the runtime's counterpart of control's deployer (DESIGN.md 5).
//! For every Gateway of class `istio-waypoint` it keeps, in the store, a ServiceAccount and a
//! Deployment with the Gateway's name (annotation [`OWNER_GATEWAY`]); the Deployment's pod runs
//! the real `waypoint` binary in `--control` mode against control (token of service account
//! `<ns>/<gateway>` minted with `mesh-control token`, control's root as CA), carries
//! `istio.io/dataplane-mode: none` (never captured by ztunnel: it terminates HBONE itself) and
//! `gateway.networking.k8s.io/gateway-name: <gateway>`, by which control's translation finds the
//! waypoint's address (a ready pod's IP), exactly as for the deployer's pods in a cluster. The
//! Gateway's `status.addresses` get that IP and a `Programmed` condition once the pod is ready.
//! A Gateway removed: its Deployment, ServiceAccount and token go (the pods follow).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::network::node_ip;
use super::objects::Key;
use super::runtime::Ctx;
use super::store::Objects;

/// Annotation naming the Gateway a generated object belongs to.
pub const OWNER_GATEWAY: &str = "meshctl.local/gateway";
/// The class of waypoint Gateways.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
/// Label by which control finds a waypoint's pods.
pub const LABEL_GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// control's root certificate (under the state directory).
const ROOT_CERT: &str = "control/ca/root-cert.pem";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn owner(v: &Value) -> &str {
    s(
        v,
        &format!("/metadata/annotations/{}", OWNER_GATEWAY.replace('/', "~1")),
    )
}

/// `(namespace, name)` of every waypoint Gateway not being deleted.
pub fn gateways(objects: &Objects) -> Vec<(String, String)> {
    objects
        .of_kind("Gateway", None)
        .filter(|g| s(g, "/spec/gatewayClassName") == WAYPOINT_CLASS)
        .filter(|g| g.pointer("/metadata/deletionTimestamp").is_none())
        .map(|g| {
            (
                s(g, "/metadata/namespace").to_owned(),
                s(g, "/metadata/name").to_owned(),
            )
        })
        .collect()
}

/// Token file of waypoint `ns/name`.
pub fn token_path(dir: &Path, ns: &str, name: &str) -> PathBuf {
    dir.join(format!("control/token-waypoint-{ns}-{name}"))
}

/// Mints the token of every waypoint that has none yet (outside the store lock: it runs
/// `mesh-control token`), and removes tokens of waypoints gone.
pub fn tokens(ctx: &Ctx, objects: &Objects) -> Result<(), String> {
    let wanted = gateways(objects);
    for (ns, name) in &wanted {
        let path = token_path(&ctx.dir, ns, name);
        if path.is_file() {
            continue;
        }
        let exe = super::sys::bin_dir().join("mesh-control");
        let key = ctx.dir.join("control/token.key");
        let sa = format!("{ns}/{name}");
        let token = super::sys::run(
            &exe.to_string_lossy(),
            &[
                "token",
                "--token-key",
                &key.to_string_lossy(),
                "--service-account",
                &sa,
            ],
        )
        .map_err(|e| format!("token of waypoint {sa}: {e}"))?;
        std::fs::write(&path, token).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    let prefix = "token-waypoint-";
    if let Ok(entries) = std::fs::read_dir(ctx.dir.join("control")) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = n.strip_prefix(prefix) else {
                continue;
            };
            let kept = wanted
                .iter()
                .any(|(ns, name)| rest == format!("{ns}-{name}"));
            if !kept {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// The ServiceAccount and Deployment of waypoint `ns/name` (what control's deployer renders).
pub fn objects_for(ctx: &Ctx, ns: &str, name: &str, uid: &str) -> [Value; 2] {
    let meta = json!({
        "name": name, "namespace": ns,
        "labels": {LABEL_GATEWAY_NAME: name, "gateway.istio.io/managed": "istio.io-mesh-controller",
            "gateway.networking.k8s.io/gateway-class-name": WAYPOINT_CLASS},
        "annotations": {OWNER_GATEWAY: name},
        "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "name": name, "uid": uid, "controller": true}],
    });
    let exe = super::sys::bin_dir().join("waypoint");
    let command = json!([
        exe.to_string_lossy(),
        "--control",
        format!("{}:{}", node_ip(1), super::up::CONTROL_PORT),
        "--token-file",
        token_path(&ctx.dir, ns, name).to_string_lossy(),
        "--control-ca",
        ctx.dir.join(ROOT_CERT).to_string_lossy(),
    ]);
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta.clone()});
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {LABEL_GATEWAY_NAME: name}},
            "template": {
                "metadata": {"labels": {LABEL_GATEWAY_NAME: name,
                    "gateway.istio.io/managed": "istio.io-mesh-controller",
                    "istio.io/dataplane-mode": "none"}},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [{
                        "name": "waypoint", "image": "mesh/waypoint:local", "command": command,
                        "env": [
                            {"name": "GATEWAY_NAME", "value": name},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        ],
                        "ports": [{"name": "hbone", "containerPort": 15008},
                            {"name": "metrics", "containerPort": 15020},
                            {"name": "ready", "containerPort": 15021}],
                        "readinessProbe": {"tcpSocket": {"port": 15008}, "periodSeconds": 1},
                    }],
                },
            },
        },
    });
    [sa, deployment]
}

/// Brings the store's waypoint objects to the waypoint Gateways (run under the store lock,
/// before the Deployment controller), and writes each Gateway's status from its pod.
pub fn reconcile(ctx: &Ctx, objects: &mut Objects) {
    let wanted = gateways(objects);
    // Objects of Gateways gone.
    let stale: Vec<Key> = objects
        .0
        .iter()
        .filter(|(k, v)| {
            matches!(k.kind.as_str(), "Deployment" | "ServiceAccount")
                && !owner(v).is_empty()
                && !wanted
                    .iter()
                    .any(|(ns, name)| *ns == k.namespace && name == owner(v))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        objects.remove(&k);
    }
    for (ns, name) in &wanted {
        // Without its token the pod could not subscribe: wait for `tokens`.
        if !token_path(&ctx.dir, ns, name).is_file() {
            continue;
        }
        let gw_key = Key {
            kind: "Gateway".into(),
            namespace: ns.clone(),
            name: name.clone(),
        };
        let uid = objects
            .get(&gw_key)
            .map(|g| s(g, "/metadata/uid").to_owned())
            .unwrap_or_default();
        for obj in objects_for(ctx, ns, name, &uid) {
            let key = Key::of(&obj);
            let current = objects.get(&key);
            let same = current.is_some_and(|c| c["spec"] == obj["spec"] && owner(c) == name);
            if !same {
                // Keep what controllers wrote (status) when only our part changed.
                let mut obj = obj;
                if let Some(st) = current.and_then(|c| c.get("status")) {
                    obj["status"] = st.clone();
                }
                obj["metadata"]["uid"] = current
                    .and_then(|c| c.pointer("/metadata/uid").cloned())
                    .unwrap_or_else(|| Value::from(super::store::new_uid()));
                objects.put(obj);
            }
        }
        let status = gateway_status(objects, ns, name);
        if let Some(g) = objects.get_mut(&gw_key)
            && g.get("status") != Some(&status)
        {
            g["status"] = status;
        }
    }
}

/// The Gateway's status: its ready pod's address and `Programmed` once there is one.
fn gateway_status(objects: &Objects, ns: &str, name: &str) -> Value {
    let ip = objects
        .of_kind("Pod", Some(ns))
        .filter(|p| {
            s(
                p,
                &format!("/metadata/labels/{}", LABEL_GATEWAY_NAME.replace('/', "~1")),
            ) == name
        })
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|p| {
            p.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map(|p| s(p, "/status/podIP"))
        .find(|ip| !ip.is_empty());
    match ip {
        Some(ip) => json!({
            "addresses": [{"type": "IPAddress", "value": ip}],
            "conditions": [{"type": "Programmed", "status": "True", "reason": "Programmed",
                "message": format!("waypoint pod ready at {ip}")}],
        }),
        None => json!({
            "conditions": [{"type": "Programmed", "status": "False", "reason": "Pending",
                "message": "waiting for the waypoint pod"}],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> Ctx {
        Ctx {
            dir: dir.to_path_buf(),
            id: "t".into(),
            nodes: 1,
            path_env: String::new(),
        }
    }

    fn gateway(ns: &str, name: &str, class: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns, "uid": "g1"},
            "spec": {"gatewayClassName": class, "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
    }

    #[test]
    fn a_waypoint_gateway_gets_a_deployment_that_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        std::fs::create_dir_all(dir.path().join("control")).unwrap();
        let mut o = Objects::default();
        o.put(gateway("shop", "wp", WAYPOINT_CLASS));
        o.put(gateway("shop", "ingress", "other"));
        reconcile(&ctx, &mut o);
        assert_eq!(
            o.of_kind("Deployment", None).count(),
            0,
            "no token yet: nothing"
        );
        std::fs::write(token_path(dir.path(), "shop", "wp"), "t").unwrap();
        reconcile(&ctx, &mut o);
        let deps: Vec<&Value> = o.of_kind("Deployment", None).collect();
        assert_eq!(deps.len(), 1, "only the istio-waypoint class");
        let d = deps[0];
        assert_eq!(d["metadata"]["name"], "wp");
        let labels = &d["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["istio.io/dataplane-mode"], "none");
        assert_eq!(labels[LABEL_GATEWAY_NAME], "wp");
        let argv = d["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
        assert!(
            argv.contains("--control") && argv.contains("token-waypoint-shop-wp"),
            "{argv}"
        );
        let gw = o.get(&Key::of(&gateway("shop", "wp", ""))).unwrap();
        assert_eq!(gw["status"]["conditions"][0]["status"], "False");
        // A ready pod: its IP becomes the Gateway's address.
        o.put(
            json!({"kind": "Pod", "metadata": {"name": "wp-x", "namespace": "shop",
            "labels": {LABEL_GATEWAY_NAME: "wp"}},
            "status": {"podIP": "10.1.0.9", "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        reconcile(&ctx, &mut o);
        let gw = o.get(&Key::of(&gateway("shop", "wp", ""))).unwrap();
        assert_eq!(gw["status"]["addresses"][0]["value"], "10.1.0.9");
        // The Gateway removed: its objects go.
        o.remove(&Key::of(&gateway("shop", "wp", "")));
        reconcile(&ctx, &mut o);
        assert_eq!(o.of_kind("Deployment", None).count(), 0);
        assert_eq!(o.of_kind("ServiceAccount", None).count(), 0);
    }
}
