use crate::l7::{
    BackendTarget, Filter, GRANT_KIND, L7Config, L7Error, L7Object, REF_NOT_PERMITTED, build,
    parse_documents,
};

/// A route of `kind` in namespace `shop` with one backend, `billing/invoices:80` unless `to`
/// says otherwise, plus `extra` documents (grants).
fn config(kind: &str, to: &str, extra: &str) -> L7Config {
    let text = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n\
         metadata: {{name: r, namespace: shop}}\n\
         spec:\n  parentRefs: [{{group: '', kind: Service, name: front, port: 80}}]\n\
         \x20 rules: [{{backendRefs: [{to}]}}]\n{extra}"
    );
    let objects = parse_documents("t.yaml", &text).expect("yaml");
    build(&objects).unwrap_or_else(|e| panic!("{e:?}"))
}

const INVOICES: &str = "{name: invoices, namespace: billing, port: 80}";

fn grant(from_kind: &str, from_ns: &str, to: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
         metadata: {{name: g, namespace: billing}}\n\
         spec:\n  from: [{{group: gateway.networking.k8s.io, kind: {from_kind}, namespace: {from_ns}}}]\n\
         \x20 to: [{to}]\n"
    )
}

fn target(c: &L7Config) -> &BackendTarget {
    &c.routes[0].rules[0].backends[0].target
}

fn is_service(t: &BackendTarget, ns: &str, svc: &str) -> bool {
    matches!(t, BackendTarget::Service { namespace, name, port: 80, .. } if namespace == ns && name == svc)
}

fn refused(t: &BackendTarget) -> bool {
    matches!(t, BackendTarget::Invalid { reason } if reason.starts_with(REF_NOT_PERMITTED)
        && reason.contains("billing/invoices"))
}

#[test]
fn same_namespace_backends_need_no_grant() {
    let c = config("HTTPRoute", "{name: local, port: 80}", "");
    assert!(is_service(target(&c), "shop", "local"), "{:?}", target(&c));
    let c = config("HTTPRoute", "{name: local, namespace: shop, port: 80}", "");
    assert!(is_service(target(&c), "shop", "local"), "{:?}", target(&c));
}

#[test]
fn cross_namespace_backends_without_a_grant_are_refused() {
    for kind in ["HTTPRoute", "GRPCRoute"] {
        let c = config(kind, INVOICES, "");
        assert!(refused(target(&c)), "{kind}: {:?}", target(&c));
    }
}

#[test]
fn a_grant_for_the_route_kind_and_namespace_allows_the_backend() {
    for kind in ["HTTPRoute", "GRPCRoute"] {
        for to in [
            "{group: '', kind: Service}",
            "{group: '', kind: Service, name: invoices}",
        ] {
            let c = config(kind, INVOICES, &grant(kind, "shop", to));
            assert!(
                is_service(target(&c), "billing", "invoices"),
                "{kind} {to}: {:?}",
                target(&c)
            );
        }
    }
    // apiVersion v1 is read too.
    let v1 = grant("HTTPRoute", "shop", "{group: '', kind: Service}").replace("v1beta1", "v1");
    let c = config("HTTPRoute", INVOICES, &v1);
    assert!(is_service(target(&c), "billing", "invoices"));
}

#[test]
fn a_grant_that_does_not_match_allows_nothing() {
    let cases = [
        // Restricted to another Service.
        (
            "HTTPRoute",
            "shop",
            "{group: '', kind: Service, name: payments}",
        ),
        // Another namespace of routes.
        ("HTTPRoute", "web", "{group: '', kind: Service}"),
        // Another kind of target.
        ("HTTPRoute", "shop", "{group: '', kind: Secret}"),
        // Another kind of route: an HTTPRoute grant does not cover GRPCRoutes.
        ("GRPCRoute", "shop", "{group: '', kind: Service}"),
    ];
    for (from_kind, from_ns, to) in cases {
        let c = config("HTTPRoute", INVOICES, &grant(from_kind, from_ns, to));
        assert!(
            refused(target(&c)),
            "{from_kind} {from_ns} {to}: {:?}",
            target(&c)
        );
    }
    let c = config(
        "GRPCRoute",
        INVOICES,
        &grant("HTTPRoute", "shop", "{group: '', kind: Service}"),
    );
    assert!(refused(target(&c)), "{:?}", target(&c));
    // A grant in the route's namespace is no grant for billing.
    let elsewhere = grant("HTTPRoute", "shop", "{group: '', kind: Service}")
        .replace("namespace: billing", "namespace: shop");
    let c = config("HTTPRoute", INVOICES, &elsewhere);
    assert!(refused(target(&c)), "{:?}", target(&c));
}

#[test]
fn a_malformed_grant_grants_nothing_and_is_reported() {
    let good_to = "{group: '', kind: Service}";
    let malformed = [
        grant("HTTPRoute", "shop", "{group: '', kind: Service, name: 7}"),
        grant("HTTPRoute", "shop", "{group: '', name: invoices}"),
        grant("HTTPRoute", "shop", good_to).replace(", namespace: shop}]", "}]"),
        grant("HTTPRoute", "shop", good_to).replace("to: [", "to: 3 #"),
        grant("HTTPRoute", "shop", good_to).replace(&format!("to: [{good_to}]"), "to: []"),
        grant("HTTPRoute", "shop", good_to).replace(&format!("  to: [{good_to}]\n"), ""),
        grant("HTTPRoute", "shop", good_to).replace(&format!("[{good_to}]"), "[a-string]"),
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
         metadata: {name: g, namespace: billing}\nspec: just-text\n"
            .to_string(),
    ];
    for g in malformed {
        let c = config("HTTPRoute", INVOICES, &g);
        assert!(refused(target(&c)), "{g}: {:?}", target(&c));
        assert_eq!(c.ignored.len(), 1, "{g}");
        assert!(
            matches!(&c.ignored[0], L7Error::Invalid { kind, namespace, name, .. }
                if kind == GRANT_KIND && namespace == "billing" && name == "g"),
            "{g}: {:?}",
            c.ignored
        );
    }
    // A valid grant next to a malformed one still grants.
    let both = grant("HTTPRoute", "shop", good_to)
        + &grant("HTTPRoute", "shop", "{kind: Service, name: {}}").replace("name: g,", "name: h,");
    let c = config("HTTPRoute", INVOICES, &both);
    assert!(is_service(target(&c), "billing", "invoices"));
    assert_eq!(c.ignored.len(), 1);
}

#[test]
fn grants_are_parsed_as_their_own_kind() {
    let text = grant("HTTPRoute", "shop", "{group: '', kind: Service}");
    let objs = parse_documents("t.yaml", &text).expect("yaml");
    assert!(matches!(&objs[0], L7Object::ReferenceGrant(g) if g.metadata.name == "g"));
}

#[test]
fn mirrors_to_other_namespaces_need_a_grant_too() {
    let text = |extra: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: r, namespace: shop}}\n\
             spec:\n  rules: [{{filters: [{{type: RequestMirror, requestMirror: {{backendRef: \
             {INVOICES}}}}}], backendRefs: [{{name: local, port: 80}}]}}]\n{extra}"
        )
    };
    let mirror = |extra: &str| {
        let objects = parse_documents("t.yaml", &text(extra)).expect("yaml");
        let c = build(&objects).unwrap_or_else(|e| panic!("{e:?}"));
        match &c.routes[0].rules[0].filters[0] {
            Filter::RequestMirror(m) => m.backend.clone(),
            other => panic!("{other:?}"),
        }
    };
    // Refused, but the route stays valid (nothing is mirrored).
    assert!(refused(&mirror("")));
    let g = grant("HTTPRoute", "shop", "{group: '', kind: Service}");
    assert!(is_service(&mirror(&g), "billing", "invoices"));
}

#[test]
fn a_consumer_route_may_send_to_its_own_service_parent_without_a_grant() {
    // GAMMA consumer route: in `shop`, attached to billing/invoices, sending its traffic on to it.
    let consumer = |backend: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: r, namespace: shop}}\n\
             spec:\n  parentRefs: [{{group: '', kind: Service, name: invoices, namespace: billing}}]\n\
             \x20 rules: [{{backendRefs: [{backend}]}}]\n"
        )
    };
    let target_of = |text: &str| {
        let objects = parse_documents("t.yaml", text).expect("yaml");
        let c = build(&objects).unwrap_or_else(|e| panic!("{e:?}"));
        target(&c).clone()
    };
    let own = target_of(&consumer(INVOICES));
    assert!(is_service(&own, "billing", "invoices"), "{own:?}");
    // Another Service of that namespace is not its parent: a grant is needed.
    let other = target_of(&consumer("{name: payments, namespace: billing, port: 80}"));
    assert!(
        matches!(&other, BackendTarget::Invalid { reason } if reason.starts_with(REF_NOT_PERMITTED)),
        "{other:?}"
    );
}
