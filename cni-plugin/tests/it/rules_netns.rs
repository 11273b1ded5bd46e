//! The redirect rules applied for real in fresh network namespaces: idempotence, check/remove,
//! and what they do to real connections. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use crate::topo::*;
use mesh_cni::netns::{NamedNetns, Netns};
use mesh_cni::rules::{self, Backend, RedirectOptions};

const WAIT: Duration = Duration::from_secs(3);
const NOTHING: Duration = Duration::from_millis(300);

fn addr(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Everything of the firewall and policy routing in `ns`, to compare before/after.
fn firewall_state(ns: &Netns, backend: Backend) -> (String, String, String) {
    let fw = match backend {
        Backend::Nft => sh(ns, "nft", &["list", "ruleset"]),
        Backend::Iptables => sh(ns, "iptables-save", &[])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    (
        fw,
        sh(ns, "ip", &["-4", "rule", "show"]),
        sh(ns, "ip", &["-4", "route", "show", "table", "all"]),
    )
}

fn apply_twice_check_remove(backend: Backend) {
    let ns = NamedNetns::create_unique("mcni-rules").unwrap();
    let ns = ns.netns();
    let opts = RedirectOptions::default();
    let pristine = firewall_state(ns, backend);
    assert!(rules::check(ns, backend, &opts).unwrap().is_absent());

    rules::apply(ns, backend, &opts).unwrap();
    let once = firewall_state(ns, backend);
    rules::apply(ns, backend, &opts).unwrap();
    assert_eq!(
        firewall_state(ns, backend),
        once,
        "second apply changed something"
    );
    assert!(
        once.1.contains("fwmark 0x111/0xfff lookup 100"),
        "{}",
        once.1
    );
    assert!(
        once.2.contains("local default dev lo table 100"),
        "{}",
        once.2
    );
    let report = rules::check(ns, backend, &opts).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(!report.is_absent());

    // Turning DNS capture on is drift for the old option set and complete for the new one.
    let dns = RedirectOptions {
        dns_capture: true,
        ..Default::default()
    };
    assert!(!rules::check(ns, backend, &dns).unwrap().is_complete());
    rules::apply(ns, backend, &dns).unwrap();
    assert!(rules::check(ns, backend, &dns).unwrap().is_complete());

    rules::remove(ns, backend).unwrap();
    let report = rules::check(ns, backend, &opts).unwrap();
    assert!(report.is_absent(), "{report:?}");
    let after = firewall_state(ns, backend);
    assert!(
        !after.0.contains("mesh") && !after.0.contains("MESH"),
        "{}",
        after.0
    );
    assert!(!after.1.contains("0x111"), "{}", after.1);
    assert!(!after.2.contains("table 100"), "{}", after.2);
    if backend == Backend::Nft {
        assert_eq!(after.0, pristine.0);
    }
    assert_eq!((&after.1, &after.2), (&pristine.1, &pristine.2));
    rules::remove(ns, backend).unwrap();
}

#[test]
fn nft_apply_is_idempotent_and_remove_leaves_nothing() {
    apply_twice_check_remove(Backend::Nft);
}

#[test]
fn iptables_apply_is_idempotent_and_remove_leaves_nothing() {
    apply_twice_check_remove(Backend::Iptables);
}

fn check_detects_drift(backend: Backend, break_it: &[&str]) {
    let ns = NamedNetns::create_unique("mcni-drift").unwrap();
    let ns = ns.netns();
    let opts = RedirectOptions::default();
    rules::apply(ns, backend, &opts).unwrap();
    sh(ns, break_it[0], &break_it[1..]);
    sh(
        ns,
        "ip",
        &["rule", "del", "fwmark", "0x111/0xfff", "lookup", "100"],
    );
    let report = rules::check(ns, backend, &opts).unwrap();
    assert!(!report.is_complete());
    assert!(!report.ip_rule && report.local_route);
    assert!(
        report
            .missing
            .iter()
            .any(|m| m.contains("9-outbound-redirect")),
        "{report:?}"
    );
    rules::apply(ns, backend, &opts).unwrap();
    assert!(rules::check(ns, backend, &opts).unwrap().is_complete());
}

#[test]
fn nft_check_detects_drift_and_apply_repairs_it() {
    check_detects_drift(
        Backend::Nft,
        &["nft", "flush", "chain", "ip", "mesh", "output_nat"],
    );
}

#[test]
fn iptables_check_detects_drift_and_apply_repairs_it() {
    check_detects_drift(
        Backend::Iptables,
        &["iptables", "-t", "nat", "-F", "MESH_OUTPUT"],
    );
}

fn redirects_real_connections(backend: Backend) {
    let t = PodAndPeer::new();
    let (pod, peer) = (t.pod.netns(), t.peer.netns());
    rules::apply(pod, backend, &RedirectOptions::default()).unwrap();
    let any = Ipv4Addr::UNSPECIFIED;
    let outbound = listen(pod, addr(any, 15001));
    let inbound = listen(pod, addr(any, 15006));
    let hbone = listen(pod, addr(any, 15008));
    let app = listen(pod, addr(any, 8080));
    let remote = listen(peer, addr(REMOTE_IP, 80));

    // Outbound from the app: captured on 15001 with the original destination.
    let _c = connect(pod, addr(REMOTE_IP, 80), None, None).unwrap();
    let (s, _) =
        accept_within(&outbound, WAIT).expect("outbound connection not redirected to 15001");
    assert_eq!(original_dst(&s), addr(REMOTE_IP, 80));
    assert!(
        accept_within(&remote, NOTHING).is_none(),
        "leaked past the capture"
    );

    // ztunnel's own socket (SO_MARK 0x539) goes out untouched.
    let _z = connect(pod, addr(REMOTE_IP, 80), None, Some(0x539)).unwrap();
    let (_, from) =
        accept_within(&remote, WAIT).expect("marked connection did not reach the remote");
    assert_eq!(from.ip(), POD_IP);
    assert!(
        accept_within(&outbound, NOTHING).is_none(),
        "marked connection redirected"
    );

    // Inbound plaintext to an app port: captured on 15006 with the original destination.
    let _i = connect(peer, addr(POD_IP, 8080), None, None).unwrap();
    let (s, from) =
        accept_within(&inbound, WAIT).expect("inbound connection not redirected to 15006");
    assert_eq!(original_dst(&s), addr(POD_IP, 8080));
    assert_eq!(from.ip(), PEER_IP);
    assert!(
        accept_within(&app, NOTHING).is_none(),
        "inbound reached the app directly"
    );

    // Inbound HBONE (15008) is not redirected.
    let _h = connect(peer, addr(POD_IP, 15008), None, None).unwrap();
    accept_within(&hbone, WAIT).expect("connection to 15008 did not reach 15008");
    assert!(
        accept_within(&inbound, NOTHING).is_none(),
        "15008 was redirected"
    );

    // Kubelet probes (SNATed to 169.254.7.127 on the node) skip the proxy.
    let probe_src = addr(Ipv4Addr::new(169, 254, 7, 127), 0);
    let _p = connect(peer, addr(POD_IP, 8080), Some(probe_src), None).unwrap();
    let (_, from) = accept_within(&app, WAIT).expect("probe did not reach the app");
    assert_eq!(from.ip(), probe_src.ip().to_owned());
    assert!(
        accept_within(&inbound, NOTHING).is_none(),
        "probe was redirected"
    );

    // The pod calling itself on its own IP is not captured (rule 8).
    let _s = connect(pod, addr(POD_IP, 8080), None, None).unwrap();
    accept_within(&app, WAIT).expect("self call did not reach the app");
    assert!(
        accept_within(&outbound, NOTHING).is_none(),
        "self call redirected"
    );

    // After remove, outbound goes straight to the remote.
    rules::remove(pod, backend).unwrap();
    let _d = connect(pod, addr(REMOTE_IP, 80), None, None).unwrap();
    accept_within(&remote, WAIT).expect("not direct after remove");
    assert!(accept_within(&outbound, NOTHING).is_none());
}

#[test]
fn nft_rules_redirect_real_connections() {
    redirects_real_connections(Backend::Nft);
}

#[test]
fn iptables_rules_redirect_real_connections() {
    redirects_real_connections(Backend::Iptables);
}

fn dns_capture(backend: Backend) {
    let t = PodAndPeer::new();
    let pod = t.pod.netns();
    rules::apply(
        pod,
        backend,
        &RedirectOptions {
            dns_capture: true,
            ..Default::default()
        },
    )
    .unwrap();
    let proxy = pod
        .run(|| UdpSocket::bind(addr(Ipv4Addr::UNSPECIFIED, 15053)))
        .unwrap()
        .unwrap();
    proxy.set_read_timeout(Some(WAIT)).unwrap();
    let client = pod
        .run(|| UdpSocket::bind(addr(Ipv4Addr::UNSPECIFIED, 0)))
        .unwrap()
        .unwrap();
    client.send_to(b"query", addr(REMOTE_IP, 53)).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = proxy
        .recv_from(&mut buf)
        .expect("DNS not redirected to 15053");
    assert_eq!(&buf[..n], b"query");
    let tcp = listen(pod, addr(Ipv4Addr::UNSPECIFIED, 15053));
    let _c = connect(pod, addr(REMOTE_IP, 53), None, None).unwrap();
    let (s, _) = accept_within(&tcp, WAIT).expect("TCP DNS not redirected to 15053");
    assert_eq!(original_dst(&s), addr(REMOTE_IP, 53));
}

#[test]
fn nft_dns_capture_redirects_udp_and_tcp_53() {
    dns_capture(Backend::Nft);
}

#[test]
fn iptables_dns_capture_redirects_udp_and_tcp_53() {
    dns_capture(Backend::Iptables);
}

/// A pod switched from full capture to `bypass_inbound` (re-apply, as when its annotation is set):
/// inbound plaintext reaches the app directly, outbound is still captured, 15008 still reaches
/// ztunnel, and the check finds exactly the bypass rule set.
fn bypass_inbound(backend: Backend) {
    let t = PodAndPeer::new();
    let (pod, peer) = (t.pod.netns(), t.peer.netns());
    let bypass = RedirectOptions {
        bypass_inbound: true,
        ..Default::default()
    };
    rules::apply(pod, backend, &RedirectOptions::default()).unwrap();
    assert!(!rules::check(pod, backend, &bypass).unwrap().is_complete());
    rules::apply(pod, backend, &bypass).unwrap();
    let report = rules::check(pod, backend, &bypass).unwrap();
    assert!(report.is_complete(), "{report:?}");
    let any = Ipv4Addr::UNSPECIFIED;
    let outbound = listen(pod, addr(any, 15001));
    let inbound = listen(pod, addr(any, 15006));
    let hbone = listen(pod, addr(any, 15008));
    let app = listen(pod, addr(any, 8080));
    let _remote = listen(peer, addr(REMOTE_IP, 80));

    let _i = connect(peer, addr(POD_IP, 8080), None, None).unwrap();
    let (_, from) = accept_within(&app, WAIT).expect("inbound did not reach the app directly");
    assert_eq!(from.ip(), PEER_IP);
    assert!(
        accept_within(&inbound, NOTHING).is_none(),
        "inbound was captured"
    );
    let _h = connect(peer, addr(POD_IP, 15008), None, None).unwrap();
    accept_within(&hbone, WAIT).expect("HBONE did not reach 15008");
    let _o = connect(pod, addr(REMOTE_IP, 80), None, None).unwrap();
    let (s, _) = accept_within(&outbound, WAIT).expect("outbound no longer captured");
    assert_eq!(original_dst(&s), addr(REMOTE_IP, 80));
}

#[test]
fn nft_bypass_inbound_leaves_inbound_alone_and_still_captures_outbound() {
    bypass_inbound(Backend::Nft);
}

#[test]
fn iptables_bypass_inbound_leaves_inbound_alone_and_still_captures_outbound() {
    bypass_inbound(Backend::Iptables);
}
