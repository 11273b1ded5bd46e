//! The runtime's controllers, run on the store every tick: Deployments keep `spec.replicas`
//! pods named `<deployment>-<suffix>` from their template (a changed template replaces them),
//! and the scheduler gives every pod a node: `spec.nodeName` as written, else the
//! `kubernetes.io/hostname` nodeSelector, else the node with the fewest pods.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{Value, json};

use super::apply::{OWNER_DEPLOYMENT, mark_deleted};
use super::network::node_name;
use super::objects::Key;
use super::store::{self, Objects};

/// Annotation with the hash of the template a Deployment's pod was made from.
pub const TEMPLATE_HASH: &str = "meshctl.local/template-hash";
/// Label that pins a pod to a node.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// FNV-1a of the template's JSON, as 8 hex digits.
fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Five random lower-case letters and digits (pod name suffix).
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b.iter()
        .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
        .collect()
}

/// Brings every Deployment's pods to its replicas; pods of deleted Deployments are deleted.
pub fn deployments(objects: &mut Objects, now: &str) {
    let deps: Vec<Value> = objects.of_kind("Deployment", None).cloned().collect();
    let mut owned: BTreeMap<(String, String), Vec<Key>> = BTreeMap::new();
    for p in objects.of_kind("Pod", None).filter(|p| !deleting(p)) {
        let owner = s(
            p,
            &format!(
                "/metadata/annotations/{}",
                OWNER_DEPLOYMENT.replace('/', "~1")
            ),
        );
        if !owner.is_empty() {
            owned
                .entry((s(p, "/metadata/namespace").to_owned(), owner.to_owned()))
                .or_default()
                .push(Key::of(p));
        }
    }
    for d in &deps {
        let (ns, name) = (s(d, "/metadata/namespace"), s(d, "/metadata/name"));
        let template = &d["spec"]["template"];
        let hash = template_hash(template);
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let pods = owned
            .remove(&(ns.to_owned(), name.to_owned()))
            .unwrap_or_default();
        let hash_ptr = format!("/metadata/annotations/{}", TEMPLATE_HASH.replace('/', "~1"));
        let (current, stale): (Vec<Key>, Vec<Key>) = pods
            .into_iter()
            .partition(|k| objects.get(k).is_some_and(|p| s(p, &hash_ptr) == hash));
        for k in &stale {
            mark_deleted(objects, k, now);
        }
        let have = u64::try_from(current.len()).unwrap_or(u64::MAX);
        for k in current
            .iter()
            .skip(usize::try_from(replicas).unwrap_or(usize::MAX))
        {
            mark_deleted(objects, k, now);
        }
        for _ in have..replicas {
            objects.put(pod_from(d, &hash));
        }
        let ready = objects
            .of_kind("Pod", Some(ns))
            .filter(|p| !deleting(p))
            .filter(|p| {
                s(p, &hash_ptr) == hash
                    && s(
                        p,
                        &format!(
                            "/metadata/annotations/{}",
                            OWNER_DEPLOYMENT.replace('/', "~1")
                        ),
                    ) == name
            })
            .filter(|p| {
                p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        let status = json!({"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": replicas});
        if let Some(d) = objects.get_mut(&Key::of(d))
            && d.get("status") != Some(&status)
        {
            d["status"] = status;
        }
    }
    for keys in owned.into_values() {
        for k in keys {
            mark_deleted(objects, &k, now);
        }
    }
}

fn pod_from(d: &Value, hash: &str) -> Value {
    let (ns, name) = (s(d, "/metadata/namespace"), s(d, "/metadata/name"));
    let template = &d["spec"]["template"];
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    annotations[OWNER_DEPLOYMENT] = Value::from(name);
    annotations[TEMPLATE_HASH] = Value::from(hash);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{name}-{}", suffix()),
            "namespace": ns,
            "uid": store::new_uid(),
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": s(d, "/metadata/uid"), "controller": true}],
        },
        "spec": template["spec"].clone(),
    })
}

/// Gives unscheduled pods a node of `1..=nodes`; a pod pinned to a node that does not exist
/// stays `Pending` with a condition saying why.
pub fn schedule(objects: &mut Objects, nodes: u8) {
    let mut load: BTreeMap<String, usize> = (1..=nodes).map(|n| (node_name(n), 0)).collect();
    for p in objects.of_kind("Pod", None) {
        if let Some(c) = load.get_mut(s(p, "/spec/nodeName")) {
            *c += 1;
        }
    }
    let unscheduled: Vec<Key> = objects
        .of_kind("Pod", None)
        .filter(|p| s(p, "/spec/nodeName").is_empty() && !deleting(p))
        .map(Key::of)
        .collect();
    for key in unscheduled {
        let Some(p) = objects.get_mut(&key) else {
            continue;
        };
        let pinned = s(
            p,
            &format!("/spec/nodeSelector/{}", HOSTNAME_LABEL.replace('/', "~1")),
        )
        .to_owned();
        let node = if pinned.is_empty() {
            load.iter()
                .min_by_key(|(n, c)| (**c, node_number(n)))
                .map(|(n, _)| n.clone())
        } else {
            load.contains_key(&pinned).then_some(pinned.clone())
        };
        match node {
            Some(n) => {
                p["spec"]["nodeName"] = Value::from(n.as_str());
                if let Some(c) = load.get_mut(&n) {
                    *c += 1;
                }
            }
            None => {
                let status = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "Unschedulable", "message": format!("no node {pinned:?} in this cluster (nodes: node-1 ... node-{nodes})")}]});
                if p.get("status") != Some(&status) {
                    p["status"] = status;
                }
            }
        }
    }
}

/// The number of node `node-N`, when it is one of `1..=nodes`.
pub fn node_number(name: &str) -> Option<u8> {
    name.strip_prefix("node-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "d"}, "spec": spec})
    }

    #[test]
    fn pods_are_pinned_or_spread_and_unknown_nodes_stay_pending() {
        let mut o = Objects::default();
        o.put(pod("a", json!({"nodeName": "node-2"})));
        o.put(pod(
            "b",
            json!({"nodeSelector": {"kubernetes.io/hostname": "node-2"}}),
        ));
        o.put(pod("c", json!({})));
        o.put(pod("e", json!({})));
        o.put(pod(
            "x",
            json!({"nodeSelector": {"kubernetes.io/hostname": "node-9"}}),
        ));
        schedule(&mut o, 2);
        let node =
            |n: &str| o.get(&Key::of(&pod(n, json!({})))).unwrap()["spec"]["nodeName"].clone();
        assert_eq!(node("b"), "node-2");
        assert_eq!((node("c"), node("e")), (json!("node-1"), json!("node-1")));
        assert_eq!(node("x"), Value::Null);
        let x = o.get(&Key::of(&pod("x", json!({})))).unwrap();
        assert_eq!(x["status"]["phase"], "Pending");
    }

    #[test]
    fn deployments_keep_their_replicas_and_replace_pods_of_an_old_template() {
        let mut o = Objects::default();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "d", "uid": "u"},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "command": ["sleep", "9"]}]}}}});
        o.put(d.clone());
        deployments(&mut o, "now");
        let pods: Vec<Value> = o.of_kind("Pod", Some("d")).cloned().collect();
        assert_eq!(pods.len(), 3);
        assert!(
            pods.iter()
                .all(|p| p["metadata"]["name"].as_str().unwrap().starts_with("web-"))
        );
        assert!(pods.iter().all(|p| p["metadata"]["labels"]["app"] == "web"));
        deployments(&mut o, "now");
        assert_eq!(o.of_kind("Pod", None).count(), 3, "steady state");
        d["spec"]["replicas"] = json!(1);
        d["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sleep", "10"]);
        o.put(d.clone());
        deployments(&mut o, "now");
        let live = o.of_kind("Pod", None).filter(|p| !deleting(p)).count();
        assert_eq!(live, 1, "old template's pods are deleted, one new pod made");
        o.remove(&Key::of(&d));
        deployments(&mut o, "now");
        assert_eq!(o.of_kind("Pod", None).filter(|p| !deleting(p)).count(), 0);
    }
}
