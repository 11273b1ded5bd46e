//! Handshakes that must succeed, and what each side learns about the other.

use std::process::Command;
use std::time::SystemTime;

use mesh_identity::tls::{ServerIdentity, client_config, peer_identity, server_config};
use mesh_identity::{TrustBundle, WorkloadCert};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SanType};
use rustls::ProtocolVersion;
use rustls::pki_types::ServerName;
use x509_parser::prelude::FromDer;

use crate::support::*;

#[test]
fn both_sides_learn_the_peer_identity_over_tls13_h2_aes_gcm() {
    let ca = ca();
    let server_cert = ca.issue(&id("bookinfo", "reviews"), HOUR).unwrap();
    let client_cert = ca.issue(&id("bookinfo", "productpage"), HOUR).unwrap();
    let client =
        client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap());
    hs.assert_ok();
    assert_eq!(
        peer_identity(hs.server.peer_certificates().unwrap()).unwrap(),
        id("bookinfo", "productpage")
    );
    assert_eq!(
        peer_identity(hs.client.peer_certificates().unwrap()).unwrap(),
        id("bookinfo", "reviews")
    );
    assert_eq!(hs.client.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(hs.server.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(hs.client.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let suite = hs.client.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    assert_eq!(
        hs.server.server_name(),
        None,
        "no SNI is sent for an IP server name"
    );
}

#[test]
fn the_server_name_is_not_checked_against_the_certificate() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let client =
        client_config(&client_cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    let server = server_config(&server_cert, &ca.bundle()).unwrap();
    let name = ServerName::try_from("unrelated.example").unwrap();
    let hs = Handshake::run_named(client, server, name);
    hs.assert_ok();
    assert_eq!(hs.server.server_name(), Some("unrelated.example"));
}

#[test]
fn one_of_the_expected_identities_is_accepted() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "ratings"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let expected = ServerIdentity::OneOf(vec![id("ns", "reviews"), id("ns", "ratings")]);
    let client = client_config(&client_cert, &ca.bundle(), expected).unwrap();
    Handshake::run(client, server_config(&server_cert, &ca.bundle()).unwrap()).assert_ok();
}

#[test]
fn chains_through_an_intermediate_are_accepted_both_ways() {
    let root = ca();
    let inter = root.issue_intermediate("cluster-east", 24 * HOUR).unwrap();
    let server_cert = inter.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = inter.issue(&id("ns", "client"), HOUR).unwrap();
    assert_eq!(server_cert.chain().len(), 2);
    // Peers only know the root.
    let bundle = TrustBundle::from_pem(root.bundle().to_pem().as_bytes()).unwrap();
    let client = client_config(&client_cert, &bundle, ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server_config(&server_cert, &bundle).unwrap());
    hs.assert_ok();
    assert_eq!(hs.server.peer_certificates().unwrap().len(), 2);
    assert_eq!(
        peer_identity(hs.server.peer_certificates().unwrap()).unwrap(),
        id("ns", "client")
    );
}

/// An RSA root made the minimal way (no basicConstraints, SKI or AKI), as some peers' CAs are, and
/// a leaf-only chain signed by it with nothing but a URI SAN.
struct RsaPeer {
    bundle_pem: String,
    cert: WorkloadCert,
}

fn rsa_peer(ns: &str, sa: &str) -> RsaPeer {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root_key = KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let mut root = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, TD);
    root.distinguished_name = dn;
    root.is_ca = IsCa::NoCa; // no basicConstraints, no SKI
    root.not_before = (SystemTime::now() - HOUR).into();
    root.not_after = (SystemTime::now() + 24 * HOUR).into();
    let root_cert = root.self_signed(&root_key).unwrap();
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(root_cert.der()).unwrap();
    assert!(
        parsed.extensions().is_empty(),
        "the root has no extensions at all"
    );

    let issuer = rcgen::Issuer::new(root, root_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.subject_alt_names = vec![SanType::URI(id(ns, sa).to_string().try_into().unwrap())];
    leaf.not_before = (SystemTime::now() - HOUR).into();
    leaf.not_after = (SystemTime::now() + HOUR).into();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(leaf_cert.der()).unwrap();
    assert_eq!(parsed.extensions().len(), 1, "only the SAN");
    assert_eq!(
        parsed.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption"
    );
    let cert = WorkloadCert::from_pem(
        leaf_cert.pem().as_bytes(),
        leaf_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    assert_eq!(cert.chain().len(), 1);
    RsaPeer {
        bundle_pem: root_cert.pem(),
        cert,
    }
}

#[test]
fn leaf_only_peers_of_a_bare_rsa_root_are_accepted_both_ways() {
    let ours = ca();
    let peer = rsa_peer("legacy", "app");
    let bundle =
        TrustBundle::from_pem(format!("{}{}", ours.bundle().to_pem(), peer.bundle_pem).as_bytes())
            .unwrap();
    let our_cert = ours.issue(&id("ns", "ours"), HOUR).unwrap();

    // The RSA-rooted peer as client.
    let client = client_config(&peer.cert, &bundle, ServerIdentity::AnyInTrustDomain).unwrap();
    let hs = Handshake::run(client, server_config(&our_cert, &bundle).unwrap());
    hs.assert_ok();
    assert_eq!(
        peer_identity(hs.server.peer_certificates().unwrap()).unwrap(),
        id("legacy", "app")
    );

    // The RSA-rooted peer as server.
    let client = client_config(
        &our_cert,
        &bundle,
        ServerIdentity::OneOf(vec![id("legacy", "app")]),
    )
    .unwrap();
    let hs = Handshake::run(client, server_config(&peer.cert, &bundle).unwrap());
    hs.assert_ok();
}
