use super::*;

#[test]
fn pod_meta_reads_identity_labels_network_and_phase() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                     "labels": {"istio.io/dataplane-mode": "ambient"},
                     "annotations": {"a": "b"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "web", "hostNetwork": false,
                 "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}]}
    }))
    .expect("pod");
    let meta = pod_meta(&pod);
    assert_eq!(meta.key(), "shop/web-1");
    assert_eq!(
        (meta.uid.as_str(), meta.node_name.as_str()),
        ("u-1", "node-1")
    );
    assert_eq!(meta.service_account(), "web");
    assert_eq!(meta.labels["istio.io/dataplane-mode"], "ambient");
    assert_eq!(
        meta.ips,
        vec!["10.1.0.5".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert!(!meta.terminated && !meta.host_network);

    let done: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "job", "namespace": "x", "uid": "u-2"},
        "spec": {"hostNetwork": true, "containers": [{"name": "c"}]},
        "status": {"phase": "Succeeded"}
    }))
    .expect("pod");
    let meta = pod_meta(&done);
    assert!(meta.terminated && meta.host_network);
    assert_eq!(meta.service_account(), "default");
}
