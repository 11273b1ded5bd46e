//! Incremental updates: only what changed is recomputed and logged, and the result always equals a translation
//! from scratch of the same objects.

use super::*;
use crate::objects::parse_documents;

const BASIC: &str = include_str!("../../tests/fixtures/basic.yaml");
const WAYPOINTS: &str = include_str!("../../tests/fixtures/waypoints.yaml");
const POLICIES: &str = include_str!("../../tests/fixtures/policies.yaml");

fn objects(text: &str) -> Vec<Object> {
    parse_documents(text).expect("fixture parses")
}

fn pod(ns: &str, name: &str, ip: &str, labels: &str) -> Object {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}, \
         annotations: {{ambient.istio.io/redirection: enabled}}}}\nspec: {{nodeName: node-1, containers: [{{name: c}}]}}\n\
         status: {{phase: Running, podIP: {ip}}}\n"
    );
    objects(&text).remove(0)
}

fn fresh(objs: Vec<Object>) -> SnapshotParts {
    let mut index = Index::new(Options::default());
    index.replace_all(objs);
    index.snapshot_parts()
}

#[test]
fn a_pod_change_touches_its_workload_and_the_services_selecting_it() {
    let mut index = Index::new(Options::default());
    index.replace_all(objects(BASIC));
    let before = index.seq();
    let changed = index.apply([Change::Upsert(pod("shop", "web-3", "10.1.0.6", "app: web"))]);
    assert_eq!(changed, ["service/shop/web", "workload/shop/web-3"]);
    assert_eq!(index.changes_since(before).map(|c| c.len()), Some(2));
    let v = index.resource("service/shop/web").expect("web").version;
    assert!(v > before);
    // Re-applying the same object changes nothing and keeps versions.
    let changed = index.apply([Change::Upsert(pod("shop", "web-3", "10.1.0.6", "app: web"))]);
    assert!(changed.is_empty(), "{changed:?}");
    assert_eq!(index.resource("service/shop/web").expect("web").version, v);
    // A pod no service selects changes only its workload.
    let changed = index.apply([Change::Upsert(pod(
        "shop",
        "lonely",
        "10.1.0.7",
        "app: none",
    ))]);
    assert_eq!(changed, ["workload/shop/lonely"]);
    // Deletion removes the workload and updates the service.
    let changed = index.apply([Change::Delete(ObjectKey::new(Kind::Pod, "shop", "web-3"))]);
    assert_eq!(changed, ["service/shop/web", "workload/shop/web-3"]);
    assert!(index.resource("workload/shop/web-3").is_none());
}

#[test]
fn namespace_label_change_moves_services_to_a_waypoint() {
    let mut index = Index::new(Options::default());
    let mut objs = objects(WAYPOINTS);
    index.replace_all(objs.clone());
    // Drop the namespace's waypoint label: services relying on it go direct; the others keep theirs.
    let ns = objs
        .iter_mut()
        .find(|o| o.key() == ObjectKey::new(Kind::Namespace, "", "app"))
        .expect("ns");
    let Object::Namespace(n) = ns else {
        panic!("namespace")
    };
    n.metadata
        .labels
        .as_mut()
        .expect("labels")
        .remove(crate::translate::LABEL_USE_WAYPOINT);
    let changed = index.apply([Change::Upsert(ns.clone())]);
    assert_eq!(changed, ["service/app/uses-ns"]);
    let Some(Resource::Service(s)) = index.resource("service/app/uses-ns").map(|e| &*e.resource)
    else {
        panic!("service")
    };
    assert_eq!(s.waypoint, None);
}

#[test]
fn a_waypoint_pod_becoming_ready_changes_the_waypoint_address() {
    let mut index = Index::new(Options::default());
    let objs = objects(WAYPOINTS);
    index.replace_all(objs.clone());
    let mut a = objs
        .into_iter()
        .find(|o| o.key() == ObjectKey::new(Kind::Pod, "app", "ns-wp-a"))
        .expect("ns-wp-a");
    let Object::Pod(p) = &mut a else {
        panic!("pod")
    };
    p.status.as_mut().expect("status").conditions = None;
    let changed = index.apply([Change::Upsert(a)]);
    assert!(
        changed.contains(&"service/app/uses-ns".to_string()),
        "{changed:?}"
    );
    let Some(Resource::Service(s)) = index.resource("service/app/uses-ns").map(|e| &*e.resource)
    else {
        panic!("service")
    };
    assert_eq!(
        s.waypoint.map(|w| w.address.to_string()).as_deref(),
        Some("10.1.0.20")
    );
}

#[test]
fn duplicate_addresses_go_to_the_first_owner_until_released() {
    let mut index = Index::new(Options::default());
    index.apply([Change::Upsert(pod("a", "old", "10.9.0.1", ""))]);
    index.apply([Change::Upsert(pod("a", "new", "10.9.0.1", ""))]);
    let addrs = |index: &Index, n: &str| match index.resource(n).map(|e| &*e.resource) {
        Some(Resource::Workload(w)) => w.addresses.clone(),
        other => panic!("{n}: {other:?}"),
    };
    assert_eq!(addrs(&index, "workload/a/old").len(), 1);
    assert!(addrs(&index, "workload/a/new").is_empty());
    assert!(
        index
            .warnings()
            .any(|w| w.message.contains("already used by Pod a/old"))
    );
    mesh_api::ConfigSnapshot::new(index.snapshot_parts()).expect("still a valid snapshot");
    let changed = index.apply([Change::Delete(ObjectKey::new(Kind::Pod, "a", "old"))]);
    assert_eq!(changed, ["workload/a/new", "workload/a/old"]);
    assert_eq!(addrs(&index, "workload/a/new").len(), 1);
    assert_eq!(index.warnings().count(), 0);
}

#[test]
fn incremental_updates_equal_translation_from_scratch() {
    let all: Vec<Object> = [BASIC, WAYPOINTS, POLICIES]
        .into_iter()
        .flat_map(objects)
        .collect();
    let mut index = Index::new(Options::default());
    let mut current: BTreeMap<ObjectKey, Object> = BTreeMap::new();
    // A deterministic pseudo-random walk of upserts and deletes in every order.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..400u32 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let o = &all[(state % all.len() as u64) as usize];
        let change = if state.is_multiple_of(3) {
            current.remove(&o.key());
            Change::Delete(o.key())
        } else {
            current.insert(o.key(), o.clone());
            Change::Upsert(o.clone())
        };
        index.apply([change]);
        if step.is_multiple_of(20) {
            let from_scratch = fresh(current.values().cloned().collect());
            let mut got = index.snapshot_parts();
            let mut want = from_scratch;
            for p in [&mut got, &mut want] {
                p.workloads.sort_by(|a, b| a.uid.cmp(&b.uid));
            }
            assert_eq!(got, want, "step {step}");
            mesh_api::ConfigSnapshot::new(got).expect("valid snapshot");
        }
    }
}

#[test]
fn change_log_reports_truncation() {
    let mut index = Index::new(Options::default());
    index.replace_all(objects(BASIC));
    assert!(index.changes_since(0).is_some());
    assert_eq!(index.changes_since(index.seq()), Some(BTreeSet::new()));
    index.log.clear();
    index.apply([Change::Upsert(pod("x", "p", "10.8.0.1", ""))]);
    assert!(
        index.changes_since(0).is_none(),
        "the log no longer reaches back to 0"
    );
}
