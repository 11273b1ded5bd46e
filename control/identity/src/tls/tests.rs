use std::time::Duration;

use rustls::CipherSuite;

use super::*;
use crate::CertificateAuthority;

#[test]
fn provider_offers_only_tls13_aes_gcm() {
    let p = provider();
    let suites: Vec<CipherSuite> = p.cipher_suites.iter().map(|s| s.suite()).collect();
    assert_eq!(
        suites,
        [
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_256_GCM_SHA384
        ]
    );
    assert!(p.cipher_suites.iter().all(|s| s.tls13().is_some()));
    assert!(!p.kx_groups.is_empty());
    assert!(Arc::ptr_eq(&p, &provider()), "one provider per process");
    let expected = if cfg!(feature = "fips") {
        "boringssl"
    } else {
        "aws-lc-rs"
    };
    assert_eq!(provider_name(), expected);
}

#[cfg(feature = "fips")]
#[test]
fn fips_provider_restricts_key_exchange_to_nist_curves() {
    use rustls::NamedGroup;
    let groups: Vec<NamedGroup> = provider().kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::secp384r1]);
}

#[test]
fn configs_speak_only_h2_over_tls13() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let cert = ca
        .issue(
            &SpiffeId::new("cluster.local", "a", "b"),
            Duration::from_secs(3600),
        )
        .unwrap();
    let server = server_config(&cert, &ca.bundle()).unwrap();
    assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
    assert!(server.send_tls13_tickets > 0);
    let client = client_config(&cert, &ca.bundle(), ServerIdentity::AnyInTrustDomain).unwrap();
    assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
}

#[test]
fn server_identity_describes_itself() {
    let one = ServerIdentity::OneOf(vec![
        SpiffeId::new("td", "a", "b"),
        SpiffeId::new("td", "c", "d"),
    ]);
    assert_eq!(
        one.to_string(),
        "one of [spiffe://td/ns/a/sa/b, spiffe://td/ns/c/sa/d]"
    );
    assert!(
        ServerIdentity::AnyInTrustDomain
            .to_string()
            .contains("trust domain")
    );
}

#[test]
fn peer_identity_reads_the_leaf_and_explains_failures() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let want = SpiffeId::new("cluster.local", "ns1", "sa1");
    let cert = ca.issue(&want, Duration::from_secs(60)).unwrap();
    assert_eq!(peer_identity(cert.chain()).unwrap(), want);
    assert!(matches!(peer_identity(&[]), Err(Error::NoPeerCertificate)));
    // The root has no URI SAN.
    let err = peer_identity(ca.bundle().roots()).unwrap_err();
    assert!(matches!(err, Error::NoSpiffeSan { .. }), "{err}");
    let garbage = [CertificateDer::from(vec![1, 2, 3])];
    assert!(matches!(peer_identity(&garbage), Err(Error::X509 { .. })));
}

#[test]
fn identity_errors_survive_the_trip_through_rustls() {
    let ours = Error::UnexpectedServer {
        found: SpiffeId::new("td", "a", "b"),
        expected: "one of [spiffe://td/ns/c/sa/d]".into(),
    };
    let wrapped = verify::identity_failure(ours);
    assert_eq!(
        rustls::AlertDescription::from(match &wrapped {
            rustls::Error::InvalidCertificate(e) => e.clone(),
            other => panic!("{other:?}"),
        }),
        rustls::AlertDescription::CertificateUnknown
    );
    assert!(matches!(
        identity_error(&wrapped),
        Some(Error::UnexpectedServer { .. })
    ));
    assert_eq!(
        describe_error(&wrapped),
        "peer certificate rejected: the server identity spiffe://td/ns/a/sa/b is not one expected \
         for this destination (expected one of [spiffe://td/ns/c/sa/d])"
    );
    let plain = rustls::Error::NoCertificatesPresented;
    assert!(identity_error(&plain).is_none());
    assert_eq!(describe_error(&plain), plain.to_string());
}
