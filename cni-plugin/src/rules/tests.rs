use super::*;

fn steps(opts: &RedirectOptions) -> Vec<u8> {
    pod_rules(opts).iter().map(|r| r.step).collect()
}

#[test]
fn rules_follow_the_design_order() {
    assert_eq!(steps(&RedirectOptions::default()), [1, 2, 3, 4, 5, 7, 8, 9]);
    assert_eq!(
        steps(&RedirectOptions {
            dns_capture: true,
            ..Default::default()
        }),
        [1, 2, 3, 4, 5, 6, 6, 7, 8, 9]
    );
    let hooks: Vec<Hook> = pod_rules(&RedirectOptions::default())
        .iter()
        .map(|r| r.hook)
        .collect();
    use Hook::*;
    assert_eq!(
        hooks,
        [
            ManglePrerouting,
            NatPrerouting,
            NatPrerouting,
            MangleOutput,
            NatOutput,
            NatOutput,
            NatOutput,
            NatOutput
        ]
    );
}

#[test]
fn bypassing_inbound_capture_leaves_out_only_the_inbound_redirect_and_its_probe_exception() {
    let bypass = RedirectOptions {
        bypass_inbound: true,
        ..Default::default()
    };
    assert_eq!(steps(&bypass), [1, 4, 5, 7, 8, 9]);
    assert!(
        pod_rules(&bypass)
            .iter()
            .all(|r| !r.nft.contains(&format!(":{INBOUND_PLAINTEXT_PORT}"))),
        "nothing redirects to the inbound plaintext port"
    );
    let both = RedirectOptions {
        bypass_inbound: true,
        dns_capture: true,
    };
    assert_eq!(steps(&both), [1, 4, 5, 6, 6, 7, 8, 9]);
}

#[test]
fn every_rule_has_both_spellings_and_a_unique_comment() {
    let rules = pod_rules(&RedirectOptions {
        dns_capture: true,
        ..Default::default()
    });
    for r in &rules {
        assert!(r.ipt_target.starts_with("-j "), "{r:?}");
        assert!(!r.ipt_match.contains(" -j "), "{r:?}");
        assert!(!r.nft.is_empty());
    }
    let mut comments: Vec<String> = rules.iter().map(|r| r.comment(Backend::Nft)).collect();
    comments.sort();
    comments.dedup();
    assert_eq!(comments.len(), rules.len());
}

#[test]
fn comment_changes_when_the_rule_text_changes() {
    let mut rule = pod_rules(&RedirectOptions::default()).remove(0);
    let before = rule.comment(Backend::Nft);
    assert!(before.starts_with("mesh:1-mark-connmark:"), "{before}");
    rule.nft.push_str(" counter");
    assert_ne!(rule.comment(Backend::Nft), before);
    assert_eq!(fnv1a(b""), 0x811c_9dc5);
    assert_eq!(fnv1a(b"a"), 0xe40c_292c);
}

#[test]
fn nft_script_replaces_our_table_atomically_with_the_design_rules() {
    let rules = pod_rules(&RedirectOptions::default());
    let script = nft::render_apply(&rules);
    assert!(script.starts_with("table ip mesh\ndelete table ip mesh\ntable ip mesh {\n"));
    let golden = [
        "type filter hook prerouting priority mangle; policy accept;",
        "meta mark & 0xfff == 0x539 ct mark set ct mark & 0xfffff000 | 0x111 comment",
        "type nat hook prerouting priority dstnat; policy accept;",
        "ip saddr 169.254.7.127 meta l4proto tcp accept comment",
        "ip daddr != 127.0.0.1 tcp dport != 15008 tcp flags & (syn | ack) == syn meta mark & 0xfff != 0x539 redirect to :15006",
        "type route hook output priority mangle; policy accept;",
        "ct mark & 0xfff == 0x111 meta mark set ct mark comment",
        "type nat hook output priority -100; policy accept;",
        "ip daddr 169.254.7.127 meta l4proto tcp accept comment",
        "meta l4proto tcp meta mark & 0xfff == 0x111 accept comment",
        "ip daddr != 127.0.0.1 oifname \"lo\" accept comment",
        "meta l4proto tcp ip daddr != 127.0.0.1 tcp flags & (syn | ack) == syn meta mark & 0xfff != 0x539 redirect to :15001",
    ];
    // Each golden line is present, and in this order (chains and rules within chains).
    let mut at = 0;
    for line in golden {
        let found = script[at..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing or out of order in\n{script}"));
        at += found + line.len();
    }
    assert!(
        !script.contains("15053"),
        "DNS capture must be off by default"
    );
    let dns = nft::render_apply(&pod_rules(&RedirectOptions {
        dns_capture: true,
        ..Default::default()
    }));
    let (p5, p6, p7) = (
        dns.find("ip daddr 169.254.7.127").unwrap(),
        dns.find("udp dport 53").unwrap(),
        dns.find("== 0x111 accept").unwrap(),
    );
    assert!(p5 < p6 && p6 < p7, "{dns}");
    assert_eq!(
        nft::render_remove(),
        "table ip mesh\ndelete table ip mesh\n"
    );
}

#[test]
fn nft_compare_finds_missing_stale_and_foreign_rules() {
    let rules = pod_rules(&RedirectOptions::default());
    let full = nft::render_apply(&rules);
    let listing: String = full.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let report = nft::compare(&listing, &rules);
    assert_eq!(report.found.len(), rules.len());
    assert!(report.missing.is_empty() && report.unexpected.is_empty());

    let without_9: String = listing
        .lines()
        .filter(|l| !l.contains("9-outbound-redirect"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "priority -100; policy accept;",
            "priority -100; policy accept;\n\t\ttcp dport 22 accept",
        );
    let report = nft::compare(&without_9, &rules);
    assert_eq!(report.missing, [rules[7].comment(Backend::Nft)]);
    assert_eq!(report.unexpected, ["output_nat: tcp dport 22 accept"]);
    assert_eq!(nft::compare("", &rules).missing.len(), rules.len());
}

const SAVE: &str = "# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MESH_OUTPUT - [0:0]
-A OUTPUT -j MESH_OUTPUT
-A OUTPUT -j MESH_OUTPUT
-A OUTPUT -p udp -j ACCEPT
-A MESH_OUTPUT -p tcp -j ACCEPT
COMMIT
";

#[test]
fn iptables_payload_adds_missing_jumps_and_drops_duplicates() {
    let state = iptables::SaveState::parse(SAVE).unwrap();
    let rules = pod_rules(&RedirectOptions::default());
    let payload = iptables::render_apply(&rules, &state);
    let mangle = &payload[..payload.find("*nat").unwrap()];
    let nat = &payload[payload.find("*nat").unwrap()..];
    assert!(mangle.starts_with("*mangle\n:MESH_PRERT - [0:0]\n:MESH_OUTPUT - [0:0]\n"));
    assert!(mangle.contains(
        "-A MESH_PRERT -m mark --mark 0x539/0xfff -m comment --comment \"mesh:1-mark-connmark:"
    ));
    assert!(mangle.contains("-j CONNMARK --set-xmark 0x111/0xfff\n"));
    assert!(mangle.contains(
        "-A MESH_OUTPUT -m connmark --mark 0x111/0xfff -m comment --comment \"mesh:4-restore-mark:"
    ));
    assert!(mangle.contains("-I PREROUTING 1 -j MESH_PRERT\n"));
    assert!(mangle.contains("-I OUTPUT 1 -j MESH_OUTPUT\n"));
    // nat: OUTPUT already jumps twice -> one delete, no insert; PREROUTING jump missing.
    assert!(nat.contains("-I PREROUTING 1 -j MESH_PRERT\n"));
    assert!(!nat.contains("-I OUTPUT"));
    assert_eq!(nat.matches("-D OUTPUT -j MESH_OUTPUT\n").count(), 1);
    let order = [
        "-A MESH_PRERT -s 169.254.7.127/32 -p tcp -m tcp -m comment",
        "-A MESH_PRERT ! -d 127.0.0.1/32 -p tcp -m tcp ! --dport 15008 --syn -m mark ! --mark 0x539/0xfff",
        "-A MESH_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -m comment",
        "-A MESH_OUTPUT -p tcp -m mark --mark 0x111/0xfff -m comment",
        "-A MESH_OUTPUT ! -d 127.0.0.1/32 -o lo -m comment",
        "-A MESH_OUTPUT ! -d 127.0.0.1/32 -p tcp -m tcp --syn -m mark ! --mark 0x539/0xfff -m comment",
    ];
    let mut at = 0;
    for line in order {
        at += nat[at..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} missing or out of order in\n{nat}"));
    }
    assert!(nat.contains("-j REDIRECT --to-ports 15006\n"));
    assert!(nat.contains("-j REDIRECT --to-ports 15001\n"));
    assert!(payload.ends_with("COMMIT\n"));
}

#[test]
fn iptables_compare_and_remove_from_a_dump() {
    let state = iptables::SaveState::parse(SAVE).unwrap();
    let rules = pod_rules(&RedirectOptions::default());
    let report = iptables::compare(&state, &rules);
    assert!(
        report
            .found
            .contains(&"nat OUTPUT -j MESH_OUTPUT".to_string())
    );
    assert!(
        report
            .missing
            .contains(&"mangle PREROUTING -j MESH_PRERT".to_string())
    );
    assert!(
        report
            .unexpected
            .contains(&"nat MESH_OUTPUT: -p tcp -j ACCEPT".to_string())
    );
    assert!(report.unexpected.iter().any(|u| u.contains("(2 times)")));
    assert_eq!(
        iptables::render_remove(&state).unwrap(),
        "*nat\n-D OUTPUT -j MESH_OUTPUT\n-D OUTPUT -j MESH_OUTPUT\n\
         :MESH_OUTPUT - [0:0]\n-X MESH_OUTPUT\nCOMMIT\n"
    );
    let empty = iptables::SaveState::parse("").unwrap();
    assert_eq!(iptables::render_remove(&empty), None);
    assert!(iptables::SaveState::parse("*nat\ngarbage\n").is_err());
}

#[test]
fn route_json_is_understood() {
    let rules = r#"[{"priority":0,"src":"all","table":"local"},
        {"priority":32764,"src":"all","fwmark":"0x111","fwmask":"0xfff","table":"100"},
        {"priority":32766,"src":"all","table":"main"}]"#;
    assert_eq!(route::count_rules(rules).unwrap(), 1);
    assert_eq!(route::count_rules("").unwrap(), 0);
    assert_eq!(
        route::count_rules(
            r#"[{"priority":32764,"fwmark":"0x111","fwmask":"0xfff","table":"101"}]"#
        )
        .unwrap(),
        0
    );
    let routes = r#"[{"type":"local","dst":"default","dev":"lo","scope":"host","flags":[]}]"#;
    assert!(route::has_local_route(routes).unwrap());
    assert!(!route::has_local_route(r#"[{"dst":"default","dev":"lo"}]"#).unwrap());
    assert!(route::has_local_route("not json").is_err());
}

#[test]
fn host_nft_script_and_set_listing() {
    let ip = Ipv4Addr::new(10, 1, 2, 3);
    let script = host::nft::render_add(ip);
    assert!(script.contains("set pod_ips { type ipv4_addr; }"));
    assert!(script.contains("type nat hook postrouting priority srcnat; policy accept;"));
    assert!(script.contains("flush chain ip mesh_host postrouting\n"));
    assert!(script.contains(
        "ip daddr @pod_ips meta skuid >= 0 snat to 169.254.7.127 comment \"mesh:host-probe-snat\""
    ));
    assert!(script.ends_with("add element ip mesh_host pod_ips { 10.1.2.3 }\n"));
    let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
        {"set": {"family": "ip", "name": "pod_ips", "table": "mesh_host", "type": "ipv4_addr",
         "handle": 1, "elem": ["10.1.2.3", "10.1.2.4"]}}]}"#;
    assert_eq!(
        host::nft::parse_set(json).unwrap(),
        [ip, Ipv4Addr::new(10, 1, 2, 4)]
    );
    assert!(host::nft::parse_set(r#"{"nftables": [{"set": {"elem": [{"prefix": 1}]}}]}"#).is_err());
}

#[test]
fn host_iptables_payloads() {
    let ip = Ipv4Addr::new(10, 1, 2, 3);
    let empty = iptables::SaveState::parse("").unwrap();
    assert_eq!(
        host::iptables::render_add(&empty, ip).unwrap(),
        format!(
            "*nat\n:MESH_HOST_POSTRT - [0:0]\n-A POSTROUTING -j MESH_HOST_POSTRT\n\
             -A MESH_HOST_POSTRT {}\nCOMMIT\n",
            host::iptables::rule_spec(ip)
        )
    );
    let save = format!(
        "*nat\n:POSTROUTING ACCEPT [0:0]\n:MESH_HOST_POSTRT - [0:0]\n\
         -A POSTROUTING -j MESH_HOST_POSTRT\n-A MESH_HOST_POSTRT {}\nCOMMIT\n",
        host::iptables::rule_spec(ip)
    );
    let state = iptables::SaveState::parse(&save).unwrap();
    assert_eq!(host::iptables::ips_in(&state), [ip]);
    assert_eq!(host::iptables::render_add(&state, ip), None);
    assert!(
        host::iptables::render_remove(&state, ip)
            .unwrap()
            .contains("-D MESH_HOST_POSTRT -d 10.1.2.3/32")
    );
    assert_eq!(
        host::iptables::render_remove(&state, Ipv4Addr::new(10, 9, 9, 9)),
        None
    );
}
