use serde_json::json;

use super::*;

fn svc(ns: &str, name: &str, cluster_ip: Option<&str>) -> Value {
    let mut spec = json!({"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn ip_of(obj: &Value) -> &str {
    obj["spec"]["clusterIP"].as_str().unwrap()
}

#[test]
fn new_services_get_the_lowest_free_addresses_and_keep_them_when_reapplied() {
    let mut first = vec![svc("a", "web", None), svc("a", "db", None)];
    assign_cluster_ips(&[], &mut first).unwrap();
    assert_eq!(ip_of(&first[0]), "10.255.0.1");
    assert_eq!(ip_of(&first[1]), "10.255.0.2");
    assert_eq!(first[0]["spec"]["clusterIPs"], json!(["10.255.0.1"]));
    // Re-applied without an address (as a user would): same VIP; a new one in the same apply must
    // not take the re-applied service's address even though it comes first.
    let mut again = vec![svc("b", "new", None), svc("a", "db", None)];
    assign_cluster_ips(&first, &mut again).unwrap();
    assert_eq!(ip_of(&again[1]), "10.255.0.2");
    assert_eq!(ip_of(&again[0]), "10.255.0.3");
}

#[test]
fn a_user_set_address_is_honoured_when_free_and_refused_when_taken() {
    let mut first = vec![svc("a", "web", None), svc("a", "fixed", Some("10.255.7.7"))];
    assign_cluster_ips(&[], &mut first).unwrap();
    assert_eq!(ip_of(&first[1]), "10.255.7.7");
    assert_eq!(ip_of(&first[0]), "10.255.0.1");
    let mut clash = vec![svc("b", "other", Some("10.255.0.1"))];
    let before = clash.clone();
    let e = assign_cluster_ips(&first, &mut clash).unwrap_err();
    assert_eq!(
        e,
        ServiceError::Taken {
            service: "b/other".into(),
            ip: "10.255.0.1".parse().unwrap(),
            owner: "a/web".into()
        }
    );
    assert!(
        e.to_string().contains("already allocated to Service a/web"),
        "{e}"
    );
    assert_eq!(clash, before, "nothing changed on error");
    // Re-applying a service with its own address is fine.
    let mut same = vec![svc("a", "fixed", Some("10.255.7.7"))];
    assign_cluster_ips(&first, &mut same).unwrap();
}

#[test]
fn bad_or_out_of_range_addresses_are_clear_errors_and_headless_stays_headless() {
    for (value, want) in [
        ("banana", "not an IPv4 address"),
        ("10.96.0.1", "outside the service CIDR 10.255.0.0/16"),
        ("10.255.0.0", "outside the service CIDR"),
        ("10.255.255.255", "outside the service CIDR"),
    ] {
        let mut objs = vec![svc("a", "x", Some(value))];
        let e = assign_cluster_ips(&[], &mut objs).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("a/x"), "{value}: {e}");
    }
    let mut objs = vec![svc("a", "h", Some("None")), json!({"kind": "Pod"})];
    assign_cluster_ips(&[], &mut objs).unwrap();
    assert_eq!(ip_of(&objs[0]), "None");
    assert!(objs[1]["spec"].is_null());
}

fn pod(ns: &str, name: &str, app: &str, ip: &str, ready: Option<bool>) -> Value {
    let mut p = json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 9090}]}]},
        "status": {"podIP": ip, "phase": "Running"}});
    if let Some(r) = ready {
        p["status"]["conditions"] =
            json!([{"type": "Ready", "status": if r { "True" } else { "False" }}]);
    }
    p
}

#[test]
fn endpoints_are_the_ready_selected_pods_of_the_namespace_with_resolved_target_ports() {
    let mut s = svc("a", "web", Some("10.255.0.9"));
    s["spec"]["ports"] = json!([
        {"name": "plain", "port": 80, "targetPort": 8080},
        {"name": "named", "port": 81, "targetPort": "http"},
        {"name": "same", "port": 82},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "sctp", "port": 99, "protocol": "SCTP"}
    ]);
    let view = ServiceView::from_object(&s).unwrap().unwrap();
    assert_eq!(view.cluster_ip, Some("10.255.0.9".parse().unwrap()));
    assert_eq!(view.ports.len(), 4, "SCTP left out");
    let pods: Vec<PodView> = [
        pod("a", "web-1", "web", "10.1.0.5", Some(true)),
        pod("a", "web-2", "web", "10.2.0.5", None), // no conditions + IP: ready, as control reads it
        pod("a", "web-3", "web", "10.1.0.6", Some(false)),
        pod("b", "web-4", "web", "10.1.0.7", Some(true)), // other namespace
        pod("a", "db-1", "db", "10.1.0.8", Some(true)),   // other labels
    ]
    .iter()
    .filter_map(PodView::from_object)
    .collect();
    let eps = endpoints(&view, &pods);
    let addrs =
        |i: usize| -> Vec<String> { eps[i].endpoints.iter().map(|e| e.to_string()).collect() };
    assert_eq!(addrs(0), ["10.1.0.5:8080", "10.2.0.5:8080"]);
    assert_eq!(addrs(1), ["10.1.0.5:9090", "10.2.0.5:9090"]);
    assert_eq!(addrs(2), ["10.1.0.5:82", "10.2.0.5:82"]);
    assert_eq!(eps[3].protocol, Protocol::Udp);
    // An empty selector selects nothing.
    let mut no_sel = view.clone();
    no_sel.selector.clear();
    assert!(
        endpoints(&no_sel, &pods)
            .iter()
            .all(|p| p.endpoints.is_empty())
    );
}

#[test]
fn terminating_or_ended_pods_are_never_ready() {
    let mut p = pod("a", "x", "web", "10.1.0.5", Some(true));
    assert!(pod_ready(&p));
    p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert!(!pod_ready(&p));
    let mut p = pod("a", "x", "web", "10.1.0.5", None);
    p["status"]["phase"] = json!("Failed");
    assert!(!pod_ready(&p));
    assert!(
        !pod_ready(&json!({"kind": "Pod", "status": {}})),
        "no address, no conditions"
    );
}

#[test]
fn bad_ports_are_errors_naming_the_service() {
    let mut s = svc("a", "web", None);
    s["spec"]["ports"] = json!([{"port": 70000}]);
    let e = ServiceView::from_object(&s).unwrap_err().to_string();
    assert!(e.contains("a/web") && e.contains("70000"), "{e}");
    s["spec"]["ports"] = json!([{"port": 80, "targetPort": -1}]);
    assert!(ServiceView::from_object(&s).is_err());
}

#[test]
fn admission_allocates_the_vip_and_refuses_unusable_probes() {
    let mut store = crate::local::store::Objects::default();
    store.put(svc("a", "web", None));
    let mut taken = svc("a", "other", Some("10.255.0.1"));
    store
        .0
        .values_mut()
        .for_each(|o| o["spec"]["clusterIP"] = json!("10.255.0.1"));
    let e = admit(&mut taken, &store).unwrap_err();
    assert!(e.contains("already allocated to Service a/web"), "{e}");
    let mut new = svc("a", "new", None);
    admit(&mut new, &store).unwrap();
    assert_eq!(ip_of(&new), "10.255.0.2");
    let mut bad = json!({"kind": "Deployment", "metadata": {"name": "d", "namespace": "a"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "readinessProbe": {"exec": {}}}]}}}});
    let e = admit(&mut bad, &store).unwrap_err();
    assert!(
        e.contains("Deployment a/d") && e.contains("httpGet and tcpSocket"),
        "{e}"
    );
    let mut good = pod("a", "p", "web", "10.1.0.5", None);
    good["spec"]["containers"][0]["readinessProbe"] = json!({"tcpSocket": {"port": "http"}});
    admit(&mut good, &store).unwrap();
}
