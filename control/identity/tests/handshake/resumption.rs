//! TLS 1.3 session resumption: cheaper reconnects that still expose the peer identity.

use mesh_identity::tls::{ServerIdentity, client_config, peer_identity, server_config};
use rustls::HandshakeKind;

use crate::support::*;

#[test]
fn reconnects_resume_and_keep_both_identities() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let client =
        client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let server = server_config(&server_cert, &ca.bundle()).unwrap();

    let first = Handshake::run(client.clone(), server.clone());
    first.assert_ok();
    assert_eq!(first.kind(), Some(HandshakeKind::Full));

    // Several reconnects in a row: every resumed handshake hands out fresh tickets.
    for _ in 0..5 {
        let again = Handshake::run(client.clone(), server.clone());
        again.assert_ok();
        assert_eq!(again.kind(), Some(HandshakeKind::Resumed));
        assert_eq!(again.server.handshake_kind(), Some(HandshakeKind::Resumed));
        assert_eq!(
            peer_identity(again.server.peer_certificates().unwrap()).unwrap(),
            id("ns", "client")
        );
        assert_eq!(
            peer_identity(again.client.peer_certificates().unwrap()).unwrap(),
            id("ns", "server")
        );
        assert_eq!(again.client.alpn_protocol(), Some(&b"h2"[..]));
    }
}

#[test]
fn a_new_server_config_does_not_resume_old_sessions() {
    // Sessions live in the config: a server with a new certificate (new config) starts afresh,
    // so a session of one identity is never resumed by another.
    let ca = ca();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let client =
        client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let first_server =
        server_config(&ca.issue(&id("ns", "a"), HOUR).unwrap(), &ca.bundle()).unwrap();
    Handshake::run(client.clone(), first_server).assert_ok();

    let other_server =
        server_config(&ca.issue(&id("ns", "b"), HOUR).unwrap(), &ca.bundle()).unwrap();
    let hs = Handshake::run(client, other_server);
    hs.assert_ok();
    assert_eq!(hs.kind(), Some(HandshakeKind::Full));
    assert_eq!(
        peer_identity(hs.client.peer_certificates().unwrap()).unwrap(),
        id("ns", "b")
    );
}

#[test]
fn resumption_with_one_of_expected_identities() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "reviews"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let expected = ServerIdentity::OneOf(vec![id("ns", "reviews")]);
    let client = client_config(&client_cert, &ca.bundle(), expected).unwrap();
    let server = server_config(&server_cert, &ca.bundle()).unwrap();
    Handshake::run(client.clone(), server.clone()).assert_ok();
    let hs = Handshake::run(client, server);
    hs.assert_ok();
    assert_eq!(hs.kind(), Some(HandshakeKind::Resumed));
    assert_eq!(
        peer_identity(hs.client.peer_certificates().unwrap()).unwrap(),
        id("ns", "reviews")
    );
}
