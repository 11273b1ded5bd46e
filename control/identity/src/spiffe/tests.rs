use super::*;

#[test]
fn display_and_parse_round_trip() {
    let id = SpiffeId::new("cluster.local", "bookinfo", "reviews-v1");
    let text = id.to_string();
    assert_eq!(text, "spiffe://cluster.local/ns/bookinfo/sa/reviews-v1");
    assert_eq!(text.parse::<SpiffeId>().unwrap(), id);
    id.validate().unwrap();
}

#[test]
fn parse_accepts_spec_characters() {
    let id: SpiffeId = "spiffe://td_1.example-x/ns/Ns.with-Dash_1/sa/sa.name"
        .parse()
        .unwrap();
    assert_eq!(id.trust_domain, "td_1.example-x");
    assert_eq!(id.namespace, "Ns.with-Dash_1");
    assert_eq!(id.service_account, "sa.name");
}

#[test]
fn parse_rejects_malformed_ids() {
    let bad = [
        ("", "must start with spiffe://"),
        (
            "http://cluster.local/ns/a/sa/b",
            "must start with spiffe://",
        ),
        (
            "SPIFFE://cluster.local/ns/a/sa/b",
            "must start with spiffe://",
        ),
        ("spiffe://cluster.local", "must have the path"),
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://Cluster.local/ns/a/sa/b", "lowercase"),
        ("spiffe://cluster.local/ns/a/sa", "exactly"),
        ("spiffe://cluster.local/ns/a/sa/b/c", "exactly"),
        ("spiffe://cluster.local/namespace/a/sa/b", "exactly"),
        ("spiffe://cluster.local/ns/a/serviceaccount/b", "exactly"),
        ("spiffe://cluster.local/ns//sa/b", "namespace is empty"),
        (
            "spiffe://cluster.local/ns/a/sa/",
            "service account is empty",
        ),
        ("spiffe://cluster.local/ns/../sa/b", "'.' or '..'"),
        ("spiffe://cluster.local/ns/a b/sa/b", "namespace may only"),
        (
            "spiffe://cluster.local/ns/a/sa/b%20",
            "service account may only",
        ),
        (
            "spiffe://cluster.local:8080/ns/a/sa/b",
            "trust domain may only",
        ),
        (
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "service account may only",
        ),
    ];
    for (input, expected) in bad {
        let err = input.parse::<SpiffeId>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expected), "{input:?}: {msg}");
        assert!(msg.contains("spiffe://<trust-domain>/ns/"), "{msg}");
    }
}

#[test]
fn parse_rejects_overlong_ids() {
    let long = format!("spiffe://cluster.local/ns/a/sa/{}", "x".repeat(2100));
    let msg = long.parse::<SpiffeId>().unwrap_err().to_string();
    assert!(msg.contains("2048"), "{msg}");
}

#[test]
fn validate_and_try_new_check_parts() {
    assert!(SpiffeId::try_new("cluster.local", "default", "default").is_ok());
    let err = SpiffeId::try_new("cluster.local", "de/fault", "default").unwrap_err();
    assert!(err.to_string().contains("namespace may only"), "{err}");
    assert!(SpiffeId::new("", "a", "b").validate().is_err());
}

#[test]
fn trust_domain_membership() {
    let id = SpiffeId::new(DEFAULT_TRUST_DOMAIN, "a", "b");
    assert!(id.in_trust_domain("cluster.local"));
    assert!(!id.in_trust_domain("other.local"));
}

#[test]
fn ids_order_by_trust_domain_then_namespace_then_account() {
    let mut ids = [
        SpiffeId::new("b", "a", "a"),
        SpiffeId::new("a", "b", "a"),
        SpiffeId::new("a", "a", "b"),
    ];
    ids.sort();
    assert_eq!(
        ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        [
            "spiffe://a/ns/a/sa/b",
            "spiffe://a/ns/b/sa/a",
            "spiffe://b/ns/a/sa/a"
        ]
    );
}
