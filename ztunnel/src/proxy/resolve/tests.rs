use super::*;

const CONFIG: &str = r#"
workloads:
  - {name: client, namespace: default, serviceAccount: client, addresses: [10.1.0.2], labels: {app: client}}
  - {name: echo-1, namespace: default, serviceAccount: echo, addresses: [10.2.0.2], labels: {app: echo}}
  - {name: echo-2, namespace: default, serviceAccount: echo, addresses: [10.2.0.3], labels: {app: echo}}
  - {name: legacy, namespace: default, addresses: [10.2.0.9], labels: {app: legacy}, protocol: TCP}
  - {name: waypoint, namespace: default, serviceAccount: waypoint, addresses: [10.2.0.50]}
  - {name: behind, namespace: default, serviceAccount: behind, addresses: [10.2.0.60], waypoint: {address: 10.2.0.50}}
services:
  - {name: echo, namespace: default, vips: [10.96.0.10], ports: [{port: 80, targetPort: 8080}], selector: {app: echo}}
  - {name: legacy, namespace: default, vips: [10.96.0.11], ports: [{port: 80, targetPort: 9090}], selector: {app: legacy}}
  - {name: empty, namespace: default, vips: [10.96.0.12], ports: [{port: 80}], selector: {app: nothing}}
  - {name: l7, namespace: default, vips: [10.96.0.13], ports: [{port: 80}], selector: {app: echo}, waypoint: {address: 10.2.0.50}}
  - {name: ghost, namespace: default, vips: [10.96.0.14], ports: [{port: 80}], selector: {app: echo}, waypoint: {address: 10.2.0.77}}
"#;

fn snap() -> ConfigSnapshot {
    mesh_api::file::parse(CONFIG).expect("test config is valid")
}

fn dst(s: &str) -> OrigDst {
    OrigDst(s.parse().expect("address"))
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "default", sa)
}

#[test]
fn workload_ip_goes_over_hbone_to_its_15008_with_its_identity() {
    let up = resolve(&snap(), dst("10.2.0.2:8080"), &mut |_| 0).unwrap();
    let Upstream::Hbone {
        via,
        authority,
        identity,
        waypoint,
        names,
    } = up
    else {
        panic!("{up:?}")
    };
    assert_eq!(via, "10.2.0.2:15008".parse().unwrap());
    assert_eq!(authority, "10.2.0.2:8080".parse().unwrap());
    assert_eq!(identity, id("echo"));
    assert!(!waypoint);
    assert_eq!(names.workload, Some(("echo-1".into(), "default".into())));
    assert_eq!(names.service, None);
}

#[test]
fn service_vip_maps_port_and_balances_over_endpoints() {
    let s = snap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..2 {
        let up = resolve(&s, dst("10.96.0.10:80"), &mut |n| i % n).unwrap();
        let Upstream::Hbone {
            authority, names, ..
        } = up
        else {
            panic!("{up:?}")
        };
        assert_eq!(
            authority.port(),
            8080,
            "service port 80 maps to targetPort 8080"
        );
        assert_eq!(
            names.service.as_deref(),
            Some("echo.default.svc.cluster.local")
        );
        seen.insert(authority.ip());
    }
    assert_eq!(seen.len(), 2, "both endpoints are used");
}

#[test]
fn unknown_service_port_is_an_error() {
    let err = resolve(&snap(), dst("10.96.0.10:81"), &mut |_| 0).unwrap_err();
    assert!(matches!(err, ResolveError::UnknownServicePort(_, 81)));
}

#[test]
fn service_without_endpoints_is_no_healthy_upstream() {
    let err = resolve(&snap(), dst("10.96.0.12:80"), &mut |_| 0).unwrap_err();
    assert!(matches!(err, ResolveError::NoHealthyEndpoint(_)));
}

#[test]
fn non_mesh_workload_and_unknown_addresses_pass_through() {
    let s = snap();
    let up = resolve(&s, dst("10.96.0.11:80"), &mut |_| 0).unwrap();
    assert!(
        matches!(up, Upstream::Passthrough { addr, .. } if addr == "10.2.0.9:9090".parse().unwrap())
    );
    let up = resolve(&s, dst("192.0.2.1:443"), &mut |_| 0).unwrap();
    assert!(
        matches!(up, Upstream::Passthrough { addr, .. } if addr == "192.0.2.1:443".parse().unwrap())
    );
}

#[test]
fn waypoint_bound_service_goes_to_the_waypoint_with_the_original_vip() {
    let up = resolve(&snap(), dst("10.96.0.13:80"), &mut |_| 0).unwrap();
    let Upstream::Hbone {
        via,
        authority,
        identity,
        waypoint,
        ..
    } = up
    else {
        panic!("{up:?}")
    };
    assert_eq!(via, "10.2.0.50:15008".parse().unwrap());
    assert_eq!(
        authority,
        "10.96.0.13:80".parse().unwrap(),
        ":authority is the original destination"
    );
    assert_eq!(identity, id("waypoint"));
    assert!(waypoint);
}

#[test]
fn waypoint_bound_workload_goes_to_the_waypoint() {
    let up = resolve(&snap(), dst("10.2.0.60:8080"), &mut |_| 0).unwrap();
    let Upstream::Hbone {
        via,
        authority,
        waypoint,
        ..
    } = up
    else {
        panic!("{up:?}")
    };
    assert_eq!(via.ip(), "10.2.0.50".parse::<IpAddr>().unwrap());
    assert_eq!(authority, "10.2.0.60:8080".parse().unwrap());
    assert!(waypoint);
}

#[test]
fn waypoint_that_is_no_known_workload_is_refused() {
    let err = resolve(&snap(), dst("10.96.0.14:80"), &mut |_| 0).unwrap_err();
    assert_eq!(
        err,
        ResolveError::UnknownWaypoint("10.2.0.77".parse().unwrap())
    );
}
