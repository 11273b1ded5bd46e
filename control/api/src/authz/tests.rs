//! Table-driven tests of AuthorizationPolicy validation and L4 evaluation.

use super::*;

/// A policy from the YAML of a config-file entry (name/namespace default to `p`/`default`).
fn policy(yaml: &str) -> Policy {
    try_policy(yaml).unwrap_or_else(|e| panic!("policy rejected: {e}\n{yaml}"))
}

fn try_policy(yaml: &str) -> Result<Policy, String> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    if let serde_yaml_ng::Value::Mapping(m) = &mut value {
        m.entry("name".into()).or_insert("p".into());
        m.entry("namespace".into()).or_insert("default".into());
    }
    let r: AuthorizationPolicyResource =
        serde_yaml_ng::from_value(value).map_err(|e| e.to_string())?;
    Policy::try_from(r).map_err(|e| e.to_string())
}

fn id(ns: &str, sa: &str) -> Option<PeerIdentity> {
    Some(PeerIdentity::new("cluster.local", ns, sa))
}

fn conn(src_identity: Option<PeerIdentity>, src_ip: &str, dst_port: u16) -> ConnAttrs {
    ConnAttrs {
        src_identity,
        src_ip: src_ip.parse().expect("ip"),
        dst_ip: "10.1.1.10".parse().expect("ip"),
        dst_port,
    }
}

/// The default connection: mTLS from default/client at 10.1.1.2 to port 8080.
fn client() -> ConnAttrs {
    conn(id("default", "client"), "10.1.1.2", 8080)
}

fn plaintext() -> ConnAttrs {
    conn(None, "10.1.1.2", 8080)
}

/// Evaluates the single ALLOW policy `rules_yaml` (the value of `rules:`) against each case.
/// A policy without L7 parts must decide the same in the waypoint (its L7 evaluation shares the
/// L4 half with ztunnel's), so each case is checked there too.
fn check_allow_rules(rules_yaml: &str, cases: &[(ConnAttrs, bool)]) {
    let p = policy(&format!("action: ALLOW\nrules: {rules_yaml}"));
    let l4_only = !p.rules.iter().any(Rule::has_l7);
    for (i, (c, allowed)) in cases.iter().enumerate() {
        let d = evaluate(&[&p], c);
        assert_eq!(
            d.is_allowed(),
            *allowed,
            "case {i} of {rules_yaml}: {c:?} -> {d}"
        );
        if l4_only {
            let w = waypoint_decision(&p, c);
            assert_eq!(w, d, "case {i} of {rules_yaml}: the waypoint decided {w}");
        }
    }
}

/// The waypoint's decision for a GET / on the connection `c`, without JWT.
fn waypoint_decision(p: &Policy, c: &ConnAttrs) -> Decision {
    let attrs = crate::l7::authz::HttpAttrs {
        src_identity: c.src_identity.as_ref(),
        src_ip: c.src_ip,
        dst_ip: c.dst_ip,
        dst_port: c.dst_port,
        host: "echo.default.svc.cluster.local",
        request_principal: None,
        claims: None,
    };
    let req = crate::l7::matching::SimpleRequest::new("GET", "/");
    crate::l7::authz::evaluate(&[p], &attrs, &req)
}

#[test]
fn no_policies_allow_everything() {
    assert_eq!(evaluate(&[], &client()), Decision::Allow);
    assert_eq!(evaluate(&[], &plaintext()), Decision::Allow);
}

#[test]
fn allow_without_rules_matches_nothing() {
    for yaml in ["action: ALLOW", "action: ALLOW\nrules: []", "{}"] {
        let p = policy(yaml);
        let d = evaluate(&[&p], &client());
        let tried = vec![PolicyRef {
            namespace: "default".into(),
            name: "p".into(),
        }];
        assert_eq!(d, Decision::Deny(DenyReason::NoAllowMatch(tried)), "{yaml}");
    }
}

#[test]
fn deny_without_rules_matches_nothing() {
    let p = policy("action: DENY");
    assert_eq!(evaluate(&[&p], &client()), Decision::Allow);
}

#[test]
fn empty_rule_matches_everything() {
    check_allow_rules("[{}]", &[(client(), true), (plaintext(), true)]);
    let deny = policy("action: DENY\nrules: [{}]");
    let d = evaluate(&[&deny], &client());
    assert_eq!(d, Decision::Deny(DenyReason::DeniedBy(deny.key())));
    assert_eq!(d.to_string(), "deny: denied by DENY policy default/p");
}

#[test]
fn deny_takes_precedence_over_allow() {
    let allow = policy("rules: [{}]");
    let deny =
        policy("name: no-9090\naction: DENY\nrules: [{to: [{operation: {ports: ['9090']}}]}]");
    assert!(evaluate(&[&allow, &deny], &client()).is_allowed());
    let d = evaluate(
        &[&allow, &deny],
        &conn(id("default", "client"), "10.1.1.2", 9090),
    );
    assert_eq!(d, Decision::Deny(DenyReason::DeniedBy(deny.key())));
}

#[test]
fn any_allow_policy_matching_allows_and_tried_policies_are_listed() {
    let a = policy("name: a\nrules: [{from: [{source: {namespaces: [prod]}}]}]");
    let b = policy("name: b\nrules: [{from: [{source: {namespaces: [default]}}]}]");
    assert!(evaluate(&[&a, &b], &client()).is_allowed());
    let d = evaluate(&[&a, &b], &conn(id("other", "x"), "10.1.1.2", 8080));
    let Decision::Deny(reason) = d else {
        panic!("expected deny")
    };
    assert_eq!(
        reason.to_string(),
        "no ALLOW policy matched (tried default/a, default/b)"
    );
}

#[test]
fn principals_with_wildcards() {
    let cases = |allowed: [bool; 4]| {
        [
            (client(), allowed[0]),
            (conn(id("prod", "client"), "10.1.1.2", 8080), allowed[1]),
            (
                conn(
                    Some(PeerIdentity::new("other.td", "default", "client")),
                    "10.1.1.2",
                    8080,
                ),
                allowed[2],
            ),
            (plaintext(), allowed[3]),
        ]
    };
    let src = |f: &str| format!("[{{from: [{{source: {{{f}}}}}]}}]");
    check_allow_rules(
        &src("principals: [cluster.local/ns/default/sa/client]"),
        &cases([true, false, false, false]),
    );
    check_allow_rules(
        &src("principals: ['cluster.local/*']"),
        &cases([true, true, false, false]),
    );
    check_allow_rules(
        &src("principals: ['*/sa/client']"),
        &cases([true, true, true, false]),
    );
    check_allow_rules(&src("principals: ['*']"), &cases([true, true, true, false]));
    check_allow_rules(
        &src("notPrincipals: ['*']"),
        &cases([false, false, false, true]),
    );
    check_allow_rules(
        &src("notPrincipals: ['cluster.local/ns/default/*']"),
        &cases([false, true, true, true]),
    );
    check_allow_rules(
        &src("principals: ['cluster.local/*'], notPrincipals: ['*/ns/prod/sa/client']"),
        &cases([true, false, false, false]),
    );
}

#[test]
fn namespaces_and_not_namespaces() {
    let cases = |allowed: [bool; 3]| {
        [
            (client(), allowed[0]),
            (conn(id("prod-eu", "x"), "10.9.9.9", 8080), allowed[1]),
            (plaintext(), allowed[2]),
        ]
    };
    check_allow_rules(
        "[{from: [{source: {namespaces: [default]}}]}]",
        &cases([true, false, false]),
    );
    check_allow_rules(
        "[{from: [{source: {namespaces: ['prod-*']}}]}]",
        &cases([false, true, false]),
    );
    check_allow_rules(
        "[{from: [{source: {notNamespaces: [default]}}]}]",
        &cases([false, true, true]),
    );
    check_allow_rules(
        "[{from: [{source: {notNamespaces: ['*']}}]}]",
        &cases([false, false, true]),
    );
}

#[test]
fn service_accounts_and_not_service_accounts() {
    let cases = |allowed: [bool; 4]| {
        [
            (client(), allowed[0]),
            (conn(id("other", "client"), "10.1.1.2", 8080), allowed[1]),
            (conn(id("default", "admin"), "10.1.1.2", 8080), allowed[2]),
            (plaintext(), allowed[3]),
        ]
    };
    check_allow_rules(
        "[{from: [{source: {serviceAccounts: [default/client]}}]}]",
        &cases([true, false, false, false]),
    );
    // A bare name is in the policy's namespace (default).
    check_allow_rules(
        "[{from: [{source: {serviceAccounts: [client]}}]}]",
        &cases([true, false, false, false]),
    );
    check_allow_rules(
        "[{from: [{source: {serviceAccounts: [other/client, admin]}}]}]",
        &cases([false, true, true, false]),
    );
    check_allow_rules(
        "[{from: [{source: {notServiceAccounts: [default/client]}}]}]",
        &cases([false, true, true, true]),
    );
}

#[test]
fn ip_blocks_remote_ip_blocks_and_negations() {
    let at = |ip: &str| conn(id("default", "client"), ip, 8080);
    let cases = |allowed: [bool; 4]| {
        [
            (at("10.1.1.2"), allowed[0]),
            (at("10.1.200.1"), allowed[1]),
            (at("192.168.1.1"), allowed[2]),
            (at("::ffff:10.1.1.2"), allowed[3]),
        ]
    };
    check_allow_rules(
        "[{from: [{source: {ipBlocks: [10.1.1.2]}}]}]",
        &cases([true, false, false, true]),
    );
    check_allow_rules(
        "[{from: [{source: {ipBlocks: [10.1.0.0/16]}}]}]",
        &cases([true, true, false, true]),
    );
    check_allow_rules(
        "[{from: [{source: {notIpBlocks: [10.1.0.0/16]}}]}]",
        &cases([false, false, true, false]),
    );
    check_allow_rules(
        "[{from: [{source: {ipBlocks: [10.0.0.0/8], notIpBlocks: [10.1.1.0/24]}}]}]",
        &cases([false, true, false, false]),
    );
    check_allow_rules(
        "[{from: [{source: {remoteIpBlocks: [10.1.0.0/16]}}]}]",
        &cases([true, true, false, true]),
    );
    check_allow_rules(
        "[{from: [{source: {notRemoteIpBlocks: [10.1.1.2]}}]}]",
        &cases([false, true, true, false]),
    );
}

#[test]
fn ports_and_not_ports() {
    let to = |port| conn(id("default", "client"), "10.1.1.2", port);
    let cases = |allowed: [bool; 3]| {
        [
            (to(8080), allowed[0]),
            (to(9090), allowed[1]),
            (to(22), allowed[2]),
        ]
    };
    check_allow_rules(
        "[{to: [{operation: {ports: ['8080', '9090']}}]}]",
        &cases([true, true, false]),
    );
    check_allow_rules(
        "[{to: [{operation: {ports: [8080]}}]}]",
        &cases([true, false, false]),
    );
    check_allow_rules(
        "[{to: [{operation: {notPorts: ['22']}}]}]",
        &cases([true, true, false]),
    );
    check_allow_rules(
        "[{to: [{operation: {ports: ['22']}}, {operation: {ports: ['9090']}}]}]",
        &cases([false, true, true]),
    );
}

#[test]
fn from_to_when_are_anded_and_entries_ored() {
    let rules = "[{from: [{source: {namespaces: [default]}}, {source: {ipBlocks: [192.168.0.0/16]}}], \
                 to: [{operation: {ports: ['8080']}}], \
                 when: [{key: destination.ip, values: [10.1.1.10]}]}]";
    check_allow_rules(
        rules,
        &[
            (client(), true),
            (conn(None, "192.168.3.3", 8080), true),
            (conn(None, "10.1.1.2", 8080), false),
            (conn(id("default", "client"), "10.1.1.2", 9090), false),
            (
                ConnAttrs {
                    dst_ip: "10.1.1.11".parse().expect("ip"),
                    ..client()
                },
                false,
            ),
        ],
    );
    // Fields within one source are ANDed.
    check_allow_rules(
        "[{from: [{source: {namespaces: [default], ipBlocks: [192.168.0.0/16]}}]}]",
        &[
            (client(), false),
            (conn(id("default", "client"), "192.168.0.1", 8080), true),
        ],
    );
    // Rules are ORed.
    check_allow_rules(
        "[{to: [{operation: {ports: ['1']}}]}, {from: [{source: {namespaces: [default]}}]}]",
        &[(client(), true), (plaintext(), false)],
    );
}

#[test]
fn l4_when_conditions() {
    let table: &[(&str, [bool; 3])] = &[
        (
            "{key: source.ip, values: [10.1.0.0/16]}",
            [true, false, true],
        ),
        (
            "{key: source.ip, notValues: [10.1.0.0/16]}",
            [false, true, false],
        ),
        ("{key: remote.ip, values: [10.1.1.2]}", [true, false, true]),
        (
            "{key: source.namespace, values: [default]}",
            [true, false, false],
        ),
        (
            "{key: source.namespace, notValues: [default]}",
            [false, true, true],
        ),
        (
            "{key: source.principal, values: ['cluster.local/ns/default/*']}",
            [true, false, false],
        ),
        (
            "{key: source.principal, notValues: ['*']}",
            [false, false, true],
        ),
        (
            "{key: destination.port, values: ['8080']}",
            [true, true, true],
        ),
        (
            "{key: destination.port, notValues: ['8080']}",
            [false, false, false],
        ),
        (
            "{key: destination.ip, values: [10.1.1.0/24]}",
            [true, true, true],
        ),
        (
            "{key: destination.ip, notValues: [10.1.1.10]}",
            [false, false, false],
        ),
    ];
    for (cond, allowed) in table {
        let cases = [
            (client(), allowed[0]),
            (conn(id("prod", "x"), "172.16.0.1", 8080), allowed[1]),
            (plaintext(), allowed[2]),
        ];
        check_allow_rules(&format!("[{{when: [{cond}]}}]"), &cases);
    }
}

#[test]
fn allow_rules_with_l7_attributes_match_nothing() {
    let l7_rules = [
        "[{to: [{operation: {methods: [GET]}}]}]",
        "[{to: [{operation: {paths: ['/admin*'], ports: ['8080']}}]}]",
        "[{to: [{operation: {hosts: [example.com]}}]}]",
        "[{to: [{operation: {notHosts: [example.com]}}]}]",
        "[{to: [{operation: {notMethods: [GET]}}]}]",
        "[{to: [{operation: {notPaths: [/x]}}]}]",
        "[{from: [{source: {requestPrincipals: ['*']}}]}]",
        "[{from: [{source: {notRequestPrincipals: ['*']}}]}]",
        "[{when: [{key: 'request.headers[x-user]', values: [admin]}]}]",
        "[{when: [{key: 'request.auth.claims[iss]', values: [me]}]}]",
        "[{when: [{key: made.up.key, values: [x]}]}]",
    ];
    for rules in l7_rules {
        check_allow_rules(rules, &[(client(), false), (plaintext(), false)]);
        // The other, L4-only rule of the same policy still works.
        let both = format!(
            "{}, {{from: [{{source: {{namespaces: [default]}}}}]}}]",
            &rules[..rules.len() - 1]
        );
        check_allow_rules(&both, &[(client(), true), (plaintext(), false)]);
    }
}

#[test]
fn deny_rules_with_l7_attributes_ignore_the_l7_parts() {
    let table: &[(&str, [bool; 3])] = &[
        // L7-only parts: the rule matches every connection (deny all), more restrictive.
        (
            "[{to: [{operation: {methods: [DELETE]}}]}]",
            [true, true, true],
        ),
        (
            "[{from: [{source: {requestPrincipals: ['*']}}]}]",
            [true, true, true],
        ),
        (
            "[{when: [{key: 'request.headers[x]', values: [y]}]}]",
            [true, true, true],
        ),
        (
            "[{when: [{key: unknown.key, notValues: [y]}]}]",
            [true, true, true],
        ),
        // Mixed: the L4 parts still have to match.
        (
            "[{to: [{operation: {methods: [DELETE], ports: ['8080']}}]}]",
            [true, false, true],
        ),
        (
            "[{from: [{source: {namespaces: [default], requestPrincipals: ['*']}}]}]",
            [true, false, false],
        ),
        (
            "[{from: [{source: {notPrincipals: ['*']}}], when: [{key: request.auth.principal, values: [a]}]}]",
            [false, false, true],
        ),
    ];
    for (rules, denied) in table {
        let p = policy(&format!("action: DENY\nrules: {rules}"));
        let cases = [
            client(),
            conn(id("prod", "x"), "172.16.0.1", 9090),
            plaintext(),
        ];
        for (c, deny) in cases.iter().zip(denied) {
            assert_eq!(!evaluate(&[&p], c).is_allowed(), *deny, "{rules} {c:?}");
        }
    }
}

#[test]
fn l7_attributes_are_reported() {
    let p = policy(
        "rules: [{to: [{operation: {methods: [GET], ports: ['80']}}], from: [{source: {requestPrincipals: ['*']}}], \
         when: [{key: 'request.headers[x]', values: [y]}, {key: source.ip, values: [10.0.0.1]}]}]",
    );
    assert_eq!(
        p.l7_attributes(),
        vec!["methods", "request.headers[x]", "requestPrincipals"]
    );
    assert!(
        policy("rules: [{to: [{operation: {ports: ['80']}}]}]")
            .l7_attributes()
            .is_empty()
    );
}

#[test]
fn invalid_policies_are_rejected_with_the_field_path() {
    let table: &[(&str, &str)] = &[
        ("action: AUDIT", "AUDIT is not supported"),
        (
            "action: CUSTOM\nprovider: {name: ext}",
            "CUSTOM is not supported",
        ),
        ("action: allow", "action: \"allow\" is not ALLOW or DENY"),
        ("rules: [{from: []}]", "rules[0].from: must not be empty"),
        ("rules: [{to: []}]", "rules[0].to: must not be empty"),
        (
            "rules: [{from: [{}]}]",
            "rules[0].from[0].source: is required",
        ),
        (
            "rules: [{from: [{source: {}}]}]",
            "rules[0].from[0].source: must set at least one field",
        ),
        (
            "rules: [{to: [{operation: {}}]}]",
            "rules[0].to[0].operation: must set at least one field",
        ),
        (
            "rules: [{}, {from: [{source: {ipBlocks: [10.0.0.0/8, 10.0.0.300]}}]}]",
            "rules[1].from[0].source.ipBlocks[1]: \"10.0.0.300\"",
        ),
        (
            "rules: [{from: [{source: {notIpBlocks: [10.0.0.0/40]}}]}]",
            "rules[0].from[0].source.notIpBlocks[0]",
        ),
        (
            "rules: [{from: [{source: {principals: ['a*b']}}]}]",
            "rules[0].from[0].source.principals[0]",
        ),
        (
            "rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/a/sa/b']}}]}]",
            "without the spiffe:// prefix",
        ),
        (
            "rules: [{from: [{source: {namespaces: ['']}}]}]",
            "rules[0].from[0].source.namespaces[0]: empty string",
        ),
        (
            "rules: [{from: [{source: {serviceAccounts: [a/b/c]}}]}]",
            "rules[0].from[0].source.serviceAccounts[0]",
        ),
        (
            "rules: [{to: [{operation: {ports: ['http']}}]}]",
            "rules[0].to[0].operation.ports[0]: \"http\" is not a port",
        ),
        (
            "rules: [{to: [{operation: {notPorts: ['0']}}]}]",
            "rules[0].to[0].operation.notPorts[0]",
        ),
        (
            "rules: [{when: [{key: source.ip}]}]",
            "rules[0].when[0].values: set values or notValues",
        ),
        (
            "rules: [{when: [{key: '', values: [a]}]}]",
            "rules[0].when[0].key: must not be empty",
        ),
        (
            "rules: [{when: [{key: destination.port, values: ['99999']}]}]",
            "rules[0].when[0].values[0]",
        ),
        (
            "rules: [{when: [{key: source.ip, notValues: [nope]}]}]",
            "rules[0].when[0].notValues[0]",
        ),
        (
            "selector: {matchLabels: {'bad key': x}}",
            "selector.matchLabels.bad key",
        ),
        (
            "selector: {matchLabels: {app: a}}\ntargetRefs: [{kind: Service, name: a}]",
            "selector: set either selector or targetRefs",
        ),
        (
            "targetRef: {kind: Service, name: a}\ntargetRefs: [{kind: Service, name: b}]",
            "targetRef: set either",
        ),
        ("name: Bad_Name", "name: \"Bad_Name\""),
        (
            "rules: [{from: [{source: {principals: [a], bogus: [x]}}]}]",
            "unknown field `bogus`",
        ),
    ];
    for (yaml, expected) in table {
        let err = try_policy(yaml).expect_err(yaml);
        assert!(
            err.contains(expected),
            "{yaml}\n  error: {err}\n  expected to contain: {expected}"
        );
    }
}

#[test]
fn target_ref_policies_are_waypoint_policies() {
    let p =
        policy("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]");
    assert!(p.is_waypoint_policy());
    let p = policy("targetRef: {kind: Service, name: echo}");
    assert_eq!(p.target_refs.len(), 1);
    assert!(!policy("rules: [{}]").is_waypoint_policy());
}

#[test]
fn policies_serialize_back_to_their_spec_shape() {
    let yaml = "name: full\nnamespace: default\naction: DENY\nselector: {matchLabels: {app: echo}}\nrules:\n\
        - from: [{source: {principals: ['cluster.local/*'], notNamespaces: [x], serviceAccounts: [sa], ipBlocks: [10.0.0.1, 10.2.0.0/16]}}]\n  \
          to: [{operation: {ports: ['80'], methods: [GET]}}]\n  \
          when: [{key: source.ip, values: [10.0.0.0/8]}, {key: 'request.headers[a]', notValues: [b]}]\n";
    let p = policy(yaml);
    let json = serde_json::to_value(&p).expect("serialize");
    assert_eq!(
        json["rules"][0]["from"][0]["source"]["serviceAccounts"][0],
        "default/sa"
    );
    assert_eq!(
        json["rules"][0]["from"][0]["source"]["ipBlocks"][0],
        "10.0.0.1"
    );
    assert_eq!(json["rules"][0]["to"][0]["operation"]["ports"][0], "80");
    assert_eq!(json["action"], "DENY");
    let back: Policy = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, p);
}
