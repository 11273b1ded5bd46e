use std::net::SocketAddrV4;

use super::*;
use crate::local::services::Protocol;

fn rule(vip: &str, port: u16, protocol: Protocol, eps: &[&str]) -> VipRule {
    VipRule {
        service: format!("shop/web:{port}"),
        vip: vip.parse().unwrap(),
        port: PortEndpoints {
            port,
            protocol,
            endpoints: eps
                .iter()
                .map(|e| e.parse::<SocketAddrV4>().unwrap())
                .collect(),
        },
    }
}

fn rules() -> Vec<VipRule> {
    vec![
        rule(
            "10.255.0.1",
            80,
            Protocol::Tcp,
            &["10.1.0.5:8080", "10.2.0.3:9090"],
        ),
        rule("10.255.0.1", 53, Protocol::Udp, &["10.1.0.5:5353"]),
        rule("10.255.0.2", 80, Protocol::Tcp, &[]),
    ]
}

#[test]
fn renders_one_transaction_that_replaces_our_table_only() {
    let s = render(2, &rules());
    assert!(
        s.starts_with(
            "table ip meshctl_services {}\ndelete table ip meshctl_services\ntable ip meshctl_services {"
        ),
        "{s}"
    );
    assert!(
        s.contains("type nat hook prerouting priority dstnat"),
        "{s}"
    );
    assert!(s.contains("type nat hook output priority -100"), "{s}");
    // The same-bridge masquerade names this node's pod CIDR.
    assert!(
        s.contains("ct status dnat ip saddr 10.2.0.0/24 oifname \"cni0\" masquerade"),
        "{s}"
    );
}

#[test]
fn spreads_over_every_ready_endpoint_with_its_target_port_and_skips_empty_services() {
    let s = render(1, &rules());
    assert!(
        s.contains("ip daddr 10.255.0.1 tcp dport 80 goto svc_0 comment \"shop/web:80\""),
        "{s}"
    );
    assert!(
        s.contains("meta l4proto tcp dnat to numgen random mod 2 map { 0 : 10.1.0.5 . 8080, 1 : 10.2.0.3 . 9090 }"),
        "{s}"
    );
    assert!(
        s.contains("ip daddr 10.255.0.1 udp dport 53 goto svc_1"),
        "{s}"
    );
    assert!(
        s.contains("chain svc_1 {\n    meta l4proto udp dnat to 10.1.0.5:5353\n  }"),
        "{s}"
    );
    assert!(!s.contains("10.255.0.2"), "no endpoints, no rule: {s}");
}

#[test]
fn headless_services_get_no_rules() {
    let svc = ServiceView {
        namespace: "a".into(),
        name: "h".into(),
        cluster_ip: None,
        ports: vec![],
        selector: Default::default(),
    };
    let ports = vec![PortEndpoints {
        port: 80,
        protocol: Protocol::Tcp,
        endpoints: vec!["10.1.0.5:80".parse().unwrap()],
    }];
    assert!(vip_rules(&[(svc.clone(), ports.clone())]).is_empty());
    let with_vip = ServiceView {
        cluster_ip: Some("10.255.0.4".parse().unwrap()),
        ..svc
    };
    let r = vip_rules(&[(with_vip, ports)]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].service, "a/h:80");
}

/// The rendered script is accepted by the real nft, twice (the second run replaces the first),
/// inside a namespace of the test's own; skipped without root.
#[test]
fn nft_accepts_the_script_and_replaces_the_table_atomically() {
    if !nft_usable() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let ns = mesh_cni::netns::NamedNetns::create_unique("meshctl-kp-test").unwrap();
    let mut kp = KubeProxy::default();
    let nodes = [(1u8, ns.name().to_owned())];
    kp.sync(&nodes, &rules()).unwrap();
    let listed = sys::run(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "nft",
            "list",
            "table",
            "ip",
            TABLE,
        ],
    )
    .unwrap();
    assert!(listed.contains("10.255.0.1"), "{listed}");
    assert!(listed.contains("numgen random mod 2"), "{listed}");
    kp.sync(&nodes, &rules()[1..]).unwrap();
    let listed = sys::run(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "nft",
            "list",
            "table",
            "ip",
            TABLE,
        ],
    )
    .unwrap();
    assert!(!listed.contains("tcp dport 80"), "{listed}");
    assert!(listed.contains("udp dport 53"), "{listed}");
    // A bad script is an error and leaves the last table.
    let e = apply(ns.name(), "table ip meshctl_services { chain x { bogus } }").unwrap_err();
    assert!(e.to_string().contains("nft -f -"), "{e}");
    let listed = sys::run(
        "ip",
        &[
            "netns",
            "exec",
            ns.name(),
            "nft",
            "list",
            "table",
            "ip",
            TABLE,
        ],
    )
    .unwrap();
    assert!(listed.contains("udp dport 53"), "{listed}");
}
