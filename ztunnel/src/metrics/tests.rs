use std::collections::BTreeMap;

use super::*;

/// Parses the exposition text into (name, labels, value) samples.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect("label k=\"v\"");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.to_owned())
        })
        .collect()
}

fn value_of(text: &str, name: &str, flags: &str) -> Option<String> {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && l.get("response_flags").map(String::as_str) == Some(flags))
        .map(|(_, _, v)| v)
}

fn outbound_labels() -> TrafficLabels {
    let src = PeerLabels {
        workload: "productpage-v1".into(),
        canonical_service: "productpage".into(),
        canonical_revision: "v1".into(),
        namespace: "bookinfo".into(),
        principal: "spiffe://cluster.local/ns/bookinfo/sa/productpage".into(),
        cluster: "Kubernetes".into(),
    };
    let dst = PeerLabels {
        workload: "reviews-v2".into(),
        namespace: "bookinfo".into(),
        ..PeerLabels::default()
    };
    TrafficLabels::new(Reporter::Source)
        .with_source(&src)
        .with_destination(&dst)
        .with_destination_service("reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo")
        .with_security_policy(SecurityPolicy::MutualTls)
}

#[test]
fn exposition_has_istio_names_and_labels() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let conn = metrics.connection(outbound_labels());
    conn.add_received(100);
    conn.add_received(23);
    conn.add_sent(7);

    let text = encode_text(&registry).expect("encode");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE istio_tcp_connections_opened counter"));
    let all = samples(&text);
    let (_, labels, value) = all
        .iter()
        .find(|(n, _, _)| n == "istio_tcp_connections_opened_total")
        .expect("opened sample");
    assert_eq!(value, "1");
    let expected: BTreeMap<String, String> = [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_workload_namespace", "bookinfo"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/bookinfo/sa/productpage",
        ),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_service", "reviews.bookinfo.svc.cluster.local"),
        ("destination_service_namespace", "bookinfo"),
        ("destination_service_name", "reviews"),
        ("destination_workload", "reviews-v2"),
        ("destination_canonical_service", "unknown"),
        ("destination_canonical_revision", "unknown"),
        ("destination_workload_namespace", "bookinfo"),
        ("destination_principal", "unknown"),
        ("destination_app", "unknown"),
        ("destination_version", "unknown"),
        ("destination_cluster", "unknown"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
        ("connection_security_policy", "mutual_tls"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(labels, &expected);

    let rx = value_of(&text, "istio_tcp_received_bytes_total", "-");
    assert_eq!(rx.as_deref(), Some("123"));
    let tx = value_of(&text, "istio_tcp_sent_bytes_total", "-");
    assert_eq!(tx.as_deref(), Some("7"));
    assert_eq!(
        value_of(&text, "istio_tcp_connections_closed_total", "-"),
        None
    );
    assert!(text.contains("\nztunnel_active_connections 1\n"), "{text}");
    assert_eq!((conn.received(), conn.sent()), (123, 7));
    // Outbound access log: the client sent what went toward the destination.
    assert_eq!(conn.access_log_bytes(), (123, 7));
}

#[test]
fn drop_counts_closed_with_final_flags() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let mut denied = metrics.connection(outbound_labels());
    denied.set_response_flags(ResponseFlags::AuthorizationPolicyDenied);
    let ok = metrics.connection(outbound_labels());
    assert_eq!(metrics.active_connections(), 2);
    drop(denied);
    drop(ok);
    assert_eq!(metrics.active_connections(), 0);

    let text = encode_text(&registry).expect("encode");
    let opened = value_of(&text, "istio_tcp_connections_opened_total", "-");
    assert_eq!(opened.as_deref(), Some("2"));
    let closed_ok = value_of(&text, "istio_tcp_connections_closed_total", "-");
    assert_eq!(closed_ok.as_deref(), Some("1"));
    let closed_deny = value_of(&text, "istio_tcp_connections_closed_total", "DENY");
    assert_eq!(closed_deny.as_deref(), Some("1"));
    assert!(text.contains("\nztunnel_active_connections 0\n"), "{text}");
}

#[test]
fn inbound_reporter_and_plaintext_values() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    metrics.pods_enrolled().set(3);
    let labels =
        TrafficLabels::new(Reporter::Destination).with_security_policy(SecurityPolicy::None);
    let conn = metrics.connection(labels);
    conn.add_received(5);
    conn.add_sent(9);
    // Inbound access log: the server sent what went back to the client.
    assert_eq!(conn.access_log_bytes(), (9, 5));
    let mut conn = conn;
    conn.set_response_flags(ResponseFlags::ConnectionFailure);
    drop(conn);

    let text = encode_text(&registry).expect("encode");
    let (_, labels, value) = samples(&text)
        .into_iter()
        .find(|(n, _, _)| n == "istio_tcp_connections_closed_total")
        .expect("closed sample");
    assert_eq!(value, "1");
    assert_eq!(labels["reporter"], "destination");
    assert_eq!(labels["response_flags"], "CONNECT");
    assert_eq!(labels["connection_security_policy"], "none");
    assert_eq!(labels["source_workload"], "unknown");
    assert!(text.contains("\nztunnel_pods_enrolled 3\n"), "{text}");
}

#[test]
fn empty_and_missing_values_encode_as_unknown() {
    assert_eq!(LabelValue::from(None::<&str>).get(), None);
    assert_eq!(LabelValue::from(Some("a")).get(), Some("a"));
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let mut labels = TrafficLabels::new(Reporter::Source);
    labels.source_workload = "".into();
    drop(metrics.connection(labels));
    let text = encode_text(&registry).expect("encode");
    assert!(text.contains("source_workload=\"unknown\""), "{text}");
}

#[test]
fn connections_with_one_label_set_add_up_and_other_sets_stay_apart() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    for n in [10, 20, 30] {
        let conn = metrics.connection(outbound_labels());
        conn.add_received(n);
        // Each connection still reports only its own bytes to its access-log record.
        assert_eq!(conn.received(), n);
    }
    let plain = outbound_labels().with_security_policy(SecurityPolicy::None);
    metrics.connection(plain).add_received(5);

    let text = encode_text(&registry).expect("encode");
    let received: Vec<(String, String)> = samples(&text)
        .into_iter()
        .filter(|(n, _, _)| n == "istio_tcp_received_bytes_total")
        .map(|(_, l, v)| (l["connection_security_policy"].clone(), v))
        .collect();
    assert_eq!(received.len(), 2, "{text}");
    assert!(
        received.contains(&("mutual_tls".into(), "60".into())),
        "{text}"
    );
    assert!(received.contains(&("none".into(), "5".into())), "{text}");
    let opened = value_of(&text, "istio_tcp_connections_opened_total", "-");
    assert!(opened.is_some());
    let closed: u64 = samples(&text)
        .into_iter()
        .filter(|(n, _, _)| n == "istio_tcp_connections_closed_total")
        .map(|(_, _, v)| v.parse::<u64>().expect("counter value"))
        .sum();
    assert_eq!(closed, 4, "{text}");
}
