//! PeerAuthentication validation and mode resolution.

use super::*;

fn pa(yaml: &str) -> PeerAuthentication {
    let r: PeerAuthenticationResource = serde_yaml_ng::from_str(yaml).expect("yaml");
    PeerAuthentication::try_from(r).unwrap_or_else(|e| panic!("{e}: {yaml}"))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const ROOT: &str = "istio-system";
const MESH_STRICT: &str = "{name: m, namespace: istio-system, mtls: {mode: STRICT}}";
const MESH_PERMISSIVE: &str = "{name: m, namespace: istio-system, mtls: {mode: PERMISSIVE}}";
const NS_STRICT: &str = "{name: n, namespace: default, mtls: {mode: STRICT}}";
const NS_PERMISSIVE: &str = "{name: n, namespace: default, mtls: {mode: PERMISSIVE}}";
const NS_UNSET: &str = "{name: n, namespace: default}";
const NS_DISABLE: &str = "{name: n, namespace: default, mtls: {mode: DISABLE}}";
const WL_STRICT: &str =
    "{name: w, namespace: default, selector: {matchLabels: {app: echo}}, mtls: {mode: STRICT}}";
const WL_PERMISSIVE: &str =
    "{name: w, namespace: default, selector: {matchLabels: {app: echo}}, mtls: {mode: PERMISSIVE}}";
const WL_UNSET: &str =
    "{name: w, namespace: default, selector: {matchLabels: {app: echo}}, mtls: {mode: UNSET}}";
const OTHER_NS_STRICT: &str = "{name: o, namespace: other, mtls: {mode: STRICT}}";
const ROOT_SELECTOR_STRICT: &str = "{name: r, namespace: istio-system, selector: {matchLabels: {app: echo}}, mtls: {mode: STRICT}}";

#[test]
fn precedence_workload_over_namespace_over_mesh() {
    use MtlsMode::{Permissive as P, Strict as S};
    let table: &[(&[&str], MtlsMode)] = &[
        (&[], P),
        (&[MESH_STRICT], S),
        (&[MESH_PERMISSIVE], P),
        (&[MESH_STRICT, NS_PERMISSIVE], P),
        (&[MESH_PERMISSIVE, NS_STRICT], S),
        (&[MESH_STRICT, NS_UNSET], S),
        (&[MESH_STRICT, NS_DISABLE], P),
        (&[MESH_STRICT, NS_PERMISSIVE, WL_STRICT], S),
        (&[MESH_PERMISSIVE, NS_STRICT, WL_PERMISSIVE], P),
        (&[NS_STRICT, WL_UNSET], S),
        (&[OTHER_NS_STRICT], P),
        (&[ROOT_SELECTOR_STRICT], P),
        // The first of two same-level policies wins (Istio: the oldest).
        (&[NS_STRICT, NS_PERMISSIVE], S),
        (&[NS_PERMISSIVE, NS_STRICT], P),
    ];
    let echo = labels(&[("app", "echo")]);
    for (policies, expected) in table {
        let ps: Vec<PeerAuthentication> = policies.iter().map(|y| pa(y)).collect();
        let got = effective_mode(&ps, ROOT, "default", &echo, None);
        assert_eq!(got, *expected, "{policies:?}");
    }
}

#[test]
fn selector_must_match_the_workload_labels() {
    let ps = vec![pa(NS_PERMISSIVE), pa(WL_STRICT)];
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &labels(&[("app", "echo")]), None),
        MtlsMode::Strict
    );
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &labels(&[("app", "other")]), None),
        MtlsMode::Permissive
    );
    assert_eq!(
        effective_mode(&ps, ROOT, "other", &labels(&[("app", "echo")]), None),
        MtlsMode::Permissive
    );
}

#[test]
fn port_level_mtls_overrides_for_its_port() {
    let ps = vec![
        pa(MESH_STRICT),
        pa(
            "{name: w, namespace: default, selector: {matchLabels: {app: echo}}, portLevelMtls: {8080: {mode: PERMISSIVE}, 9090: {mode: UNSET}}}",
        ),
    ];
    let echo = labels(&[("app", "echo")]);
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &echo, Some(8080)),
        MtlsMode::Permissive
    );
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &echo, Some(9090)),
        MtlsMode::Strict
    );
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &echo, Some(80)),
        MtlsMode::Strict
    );
    assert_eq!(
        effective_mode(&ps, ROOT, "default", &echo, None),
        MtlsMode::Strict
    );
}

#[test]
fn invalid_peer_authentications_are_rejected() {
    let table = [
        (
            "{name: a, namespace: default, portLevelMtls: {80: {mode: STRICT}}}",
            "portLevelMtls: requires a selector",
        ),
        (
            "{name: a, namespace: default, selector: {matchLabels: {a: b}}, portLevelMtls: {70000: {mode: STRICT}}}",
            "portLevelMtls[70000]",
        ),
        ("{name: a, namespace: Default}", "namespace"),
        (
            "{name: a, namespace: default, selector: {matchLabels: {'-x': b}}}",
            "selector.matchLabels.-x",
        ),
    ];
    for (yaml, expected) in table {
        let r: PeerAuthenticationResource = serde_yaml_ng::from_str(yaml).expect("yaml");
        let err = PeerAuthentication::try_from(r).expect_err(yaml).to_string();
        assert!(err.contains(expected), "{yaml}: {err}");
    }
    let unknown = serde_yaml_ng::from_str::<PeerAuthenticationResource>(
        "{name: a, namespace: b, mtls: {mode: SOMETIMES}}",
    );
    assert!(unknown.is_err());
}

#[test]
fn serializes_in_spec_shape_and_round_trips() {
    let p = pa(
        "{name: w, namespace: default, selector: {matchLabels: {app: echo}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: PERMISSIVE}}}",
    );
    let json = serde_json::to_value(&p).expect("serialize");
    assert_eq!(json["mtls"]["mode"], "STRICT");
    assert_eq!(json["portLevelMtls"]["8080"]["mode"], "PERMISSIVE");
    let back: PeerAuthentication = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, p);
}
