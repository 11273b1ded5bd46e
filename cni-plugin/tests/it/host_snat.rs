//! The node-side probe SNAT applied for real: node, pod and a forwarding client in their own
//! network namespaces. Needs root.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::topo::*;
use mesh_cni::netns::NamedNetns;
use mesh_cni::rules::{Backend, PROBE_SOURCE, host};

const POD: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 2);

struct Node {
    node: NamedNetns,
    pod: NamedNetns,
    other: NamedNetns,
}

fn node() -> Node {
    let node = NamedNetns::create_unique("mcni-node").unwrap();
    let pod = NamedNetns::create_unique("mcni-hpod").unwrap();
    let other = NamedNetns::create_unique("mcni-other").unwrap();
    for ns in [&node, &pod, &other] {
        up_lo(ns.netns());
    }
    veth(&node, "vpod", "10.78.0.1/24", &pod, "eth0", "10.78.0.2/24");
    veth(
        &node,
        "vother",
        "10.79.0.1/24",
        &other,
        "eth0",
        "10.79.0.2/24",
    );
    sh(
        pod.netns(),
        "ip",
        &["route", "add", "default", "via", "10.78.0.1"],
    );
    sh(
        other.netns(),
        "ip",
        &["route", "add", "default", "via", "10.79.0.1"],
    );
    sh(node.netns(), "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    Node { node, pod, other }
}

/// Connects from `from` to the pod's app and returns the source address the app saw, after
/// checking that bytes flow both ways (replies are un-NATed correctly).
fn seen_source(t: &Node, from: &NamedNetns) -> IpAddr {
    let app = listen(
        t.pod.netns(),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080),
    );
    let mut c = connect(from.netns(), SocketAddrV4::new(POD, 8080), None, None).unwrap();
    let (mut s, peer) = accept_within(&app, Duration::from_secs(3)).expect("no connection");
    s.set_nonblocking(false).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    s.write_all(b"pong").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    peer.ip()
}

fn host_snat(backend: Backend) {
    let t = node();
    let n = t.node.netns();
    assert_eq!(seen_source(&t, &t.node), IpAddr::V4(NODE));

    host::add_pod_ip(n, backend, POD).unwrap();
    host::add_pod_ip(n, backend, POD).unwrap();
    host::add_pod_ip(n, backend, Ipv4Addr::new(10, 78, 0, 3)).unwrap();
    assert_eq!(
        host::pod_ips(n, backend).unwrap(),
        [POD, Ipv4Addr::new(10, 78, 0, 3)]
    );
    // A host socket to an enrolled pod is SNATed to the probe source...
    assert_eq!(seen_source(&t, &t.node), IpAddr::V4(PROBE_SOURCE));
    // ...traffic forwarded through the node is not.
    assert_eq!(seen_source(&t, &t.other), IpAddr::V4(OTHER));

    host::remove_pod_ip(n, backend, POD).unwrap();
    host::remove_pod_ip(n, backend, POD).unwrap();
    assert_eq!(
        host::pod_ips(n, backend).unwrap(),
        [Ipv4Addr::new(10, 78, 0, 3)]
    );
    assert_eq!(seen_source(&t, &t.node), IpAddr::V4(NODE));

    host::uninstall(n, backend).unwrap();
    host::uninstall(n, backend).unwrap();
    assert!(host::pod_ips(n, backend).unwrap().is_empty());
    host::remove_pod_ip(n, backend, POD).unwrap();
    let fw = match backend {
        Backend::Nft => sh(n, "nft", &["list", "ruleset"]),
        Backend::Iptables => sh(n, "iptables-save", &[]),
    };
    assert!(!fw.contains("mesh") && !fw.contains("MESH"), "{fw}");
}

#[test]
fn nft_host_snat_applies_to_host_sockets_only() {
    host_snat(Backend::Nft);
}

#[test]
fn iptables_host_snat_applies_to_host_sockets_only() {
    host_snat(Backend::Iptables);
}
