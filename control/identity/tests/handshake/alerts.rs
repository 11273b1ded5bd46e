//! Every rejection of DESIGN.md 4.1 and the TLS alert the rejected peer receives.

use std::time::SystemTime;

use mesh_identity::tls::{self, ServerIdentity, client_config, server_config};
use mesh_identity::{CertificateAuthority, Error, SpiffeId};
use rcgen::SanType;
use rustls::{AlertDescription, ServerConnection};

use crate::support::*;

#[test]
fn missing_client_certificate_gets_certificate_required() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client = custom_client(&ca.bundle(), None);
    let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
    assert_eq!(
        hs.server_error,
        Some(rustls::Error::NoCertificatesPresented)
    );
    assert_eq!(
        hs.client_received(),
        Some(AlertDescription::CertificateRequired)
    );
}

/// Foreign CAs: one with the same subject as ours (as every Istio-style root has), one without.
fn foreign_cas() -> [CertificateAuthority; 2] {
    [
        ca(),
        CertificateAuthority::generate("elsewhere.example").unwrap(),
    ]
}

#[test]
fn client_from_a_foreign_ca_gets_unknown_ca() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    for foreign in foreign_cas() {
        let client_id = SpiffeId::new(foreign.trust_domain(), "ns", "client");
        let client_cert = foreign.issue(&client_id, HOUR).unwrap();
        let client = client_config(
            &client_cert,
            &ca.bundle(),
            ServerIdentity::OneOf(vec![id("ns", "server")]),
        )
        .unwrap();
        let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
        assert_eq!(
            hs.server_error,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
        assert_eq!(hs.client_received(), Some(AlertDescription::UnknownCA));
    }
}

#[test]
fn server_from_a_foreign_ca_gets_unknown_ca() {
    let ca = ca();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    for foreign in foreign_cas() {
        let server_id = SpiffeId::new(foreign.trust_domain(), "ns", "server");
        let server_cert = foreign.issue(&server_id, HOUR).unwrap();
        let client =
            client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
        let hs = Handshake::run(
            client,
            server_config(&server_cert, &foreign.bundle()).unwrap(),
        );
        assert_eq!(
            hs.client_error,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        );
        assert_eq!(hs.server_received(), Some(AlertDescription::UnknownCA));
    }
}

#[test]
fn client_of_another_trust_domain_gets_certificate_unknown() {
    // Both roots are trusted (federation), but the server only admits its own trust domain.
    let ca = ca();
    let other = CertificateAuthority::generate("other.local").unwrap();
    let bundle = bundle_of(&[&ca, &other]);
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = other
        .issue(&SpiffeId::new("other.local", "ns", "client"), HOUR)
        .unwrap();
    let client = client_config(
        &client_cert,
        &bundle,
        ServerIdentity::OneOf(vec![id("ns", "server")]),
    )
    .unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &bundle).unwrap());
    let err = hs.server_error.as_ref().expect("server rejects the client");
    assert!(
        matches!(tls::identity_error(err), Some(Error::ForeignPeer { .. })),
        "{err:?}"
    );
    assert!(tls::describe_error(err).contains("spiffe://other.local/ns/ns/sa/client"));
    assert_eq!(
        hs.client_received(),
        Some(AlertDescription::CertificateUnknown)
    );
}

#[test]
fn client_without_uri_san_gets_certificate_unknown() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let dns_only = forge(
        &ca,
        vec![SanType::DnsName("client.example".try_into().unwrap())],
    );
    let client = custom_client(&ca.bundle(), Some(dns_only));
    let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
    let err = hs.server_error.as_ref().expect("server rejects the client");
    assert!(
        matches!(tls::identity_error(err), Some(Error::NoSpiffeSan { .. })),
        "{err:?}"
    );
    assert_eq!(
        hs.client_received(),
        Some(AlertDescription::CertificateUnknown)
    );
}

#[test]
fn server_without_uri_san_gets_certificate_unknown() {
    let ca = ca();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let server = custom_server(&ca.bundle(), forge(&ca, vec![]));
    let client =
        client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server);
    assert!(matches!(
        hs.client_error.as_ref().and_then(tls::identity_error),
        Some(Error::NoSpiffeSan { .. })
    ));
    assert_eq!(
        hs.server_received(),
        Some(AlertDescription::CertificateUnknown)
    );
}

#[test]
fn unexpected_server_identity_gets_certificate_unknown_with_a_clear_reason() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "impostor"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let expected = ServerIdentity::OneOf(vec![id("ns", "reviews"), id("ns", "ratings")]);
    let client = client_config(&client_cert, &ca.bundle(), expected).unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
    let err = hs.client_error.as_ref().expect("client rejects the server");
    assert!(matches!(
        tls::identity_error(err),
        Some(Error::UnexpectedServer { .. })
    ));
    let reason = tls::describe_error(err);
    assert!(
        reason.contains("sa/impostor")
            && reason.contains("sa/reviews")
            && reason.contains("sa/ratings"),
        "{reason}"
    );
    assert_eq!(
        hs.server_received(),
        Some(AlertDescription::CertificateUnknown)
    );
}

#[test]
fn server_of_another_trust_domain_is_not_any_in_trust_domain() {
    let ca = ca();
    let other = CertificateAuthority::generate("other.local").unwrap();
    let bundle = bundle_of(&[&ca, &other]);
    let server_cert = other
        .issue(&SpiffeId::new("other.local", "ns", "server"), HOUR)
        .unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let client = client_config(&client_cert, &bundle, ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &bundle).unwrap());
    assert!(matches!(
        hs.client_error.as_ref().and_then(tls::identity_error),
        Some(Error::ForeignPeer { .. })
    ));
    assert_eq!(
        hs.server_received(),
        Some(AlertDescription::CertificateUnknown)
    );
}

#[test]
fn expired_client_certificate_gets_certificate_expired() {
    let ca = ca();
    let now = SystemTime::now();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let expired = ca
        .issue_with_validity(&id("ns", "client"), now - 2 * HOUR, now - HOUR)
        .unwrap();
    let client = client_config(&expired, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
    assert!(hs.server_error.is_some());
    assert_eq!(
        hs.client_received(),
        Some(AlertDescription::CertificateExpired)
    );
}

#[test]
fn expired_or_future_server_certificate_gets_certificate_expired() {
    let ca = ca();
    let now = SystemTime::now();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    for (from, to) in [(now - 2 * HOUR, now - HOUR), (now + HOUR, now + 2 * HOUR)] {
        let server_cert = ca
            .issue_with_validity(&id("ns", "server"), from, to)
            .unwrap();
        let client =
            client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
        let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
        assert!(hs.client_error.is_some());
        assert_eq!(
            hs.server_received(),
            Some(AlertDescription::CertificateExpired)
        );
    }
}

#[test]
fn alpn_without_h2_gets_no_application_protocol() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let mut client = (*client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain)
        .unwrap())
    .clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let hs = Handshake::run(
        client.into(),
        server_config(&server_cert, &ca.bundle()).unwrap(),
    );
    assert_eq!(hs.server_error, Some(rustls::Error::NoApplicationProtocol));
    assert_eq!(
        hs.client_received(),
        Some(AlertDescription::NoApplicationProtocol)
    );
}

#[test]
fn tls12_client_hello_gets_protocol_version() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let mut server =
        ServerConnection::new(server_config(&server_cert, &ca.bundle()).unwrap()).unwrap();
    let hello = tls12_client_hello();
    server.read_tls(&mut &hello[..]).unwrap();
    let err = server.process_new_packets().unwrap_err();
    assert!(matches!(err, rustls::Error::PeerIncompatible(_)), "{err:?}");
    let mut out = Vec::new();
    server.write_tls(&mut out).unwrap();
    assert!(is_protocol_version_alert(&out), "{out:02x?}");
}
