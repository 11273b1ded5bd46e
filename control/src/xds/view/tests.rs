use super::*;
use crate::objects::parse_documents;
use crate::translate::Options;

const MESH: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: wp, namespace: shop}\n\
    spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n---\n\
    apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\n\
    spec: {parentRefs: [{name: wp}], rules: [{backendRefs: [{name: invoices, namespace: billing, port: 80}], \
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: audit, namespace: audit, port: 80}}}]}]}\n";

fn grant(ns: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: {ns}}}\n\
         spec: {{from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}}], \
         to: [{{group: '', kind: Service}}]}}\n"
    )
}

#[test]
fn waypoints_get_the_grants_of_the_namespaces_their_routes_send_to() {
    let mut index = Index::new(Options::default());
    let text = [
        MESH.to_string(),
        grant("billing"),
        grant("audit"),
        grant("shop"),
        grant("other"),
    ]
    .concat();
    index.replace_all(parse_documents(&text).expect("objects"));
    let names: Vec<&str> = waypoint_resources(&index, "shop", "wp")
        .into_keys()
        .filter(|n| n.starts_with("l7/"))
        .collect();
    // Backend and mirror namespaces; not the route's own (no grant needed there) nor unrelated ones.
    assert_eq!(
        names,
        [
            "l7/httproute/shop/r",
            "l7/referencegrant/audit/g",
            "l7/referencegrant/billing/g",
        ]
    );
    // Another waypoint, without routes, gets no grants.
    assert!(
        waypoint_resources(&index, "other", "wp")
            .into_keys()
            .all(|n| !n.starts_with("l7/"))
    );
}
