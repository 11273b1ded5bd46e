use std::process::Command;
use std::time::{Duration, SystemTime};

use rustls::server::ParsedCertificate;
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa)
}

/// Verifies `cert`'s chain against `bundle` the way the TLS verifiers do.
fn verify(cert: &WorkloadCert, bundle: &TrustBundle) -> Result<(), rustls::Error> {
    let leaf = ParsedCertificate::try_from(cert.leaf())?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &leaf,
        &bundle.root_store(),
        &cert.chain()[1..],
        UnixTime::now(),
        tls::provider().signature_verification_algorithms.all,
    )
}

fn approx(a: SystemTime, b: SystemTime, tolerance: Duration) -> bool {
    let d = a.duration_since(b).unwrap_or_else(|e| e.duration());
    d <= tolerance
}

#[test]
fn generated_root_is_a_ten_year_p256_ca_of_the_trust_domain() {
    let ca = CertificateAuthority::generate("example.org").unwrap();
    assert_eq!(ca.trust_domain(), "example.org");
    let roots = ca.bundle();
    assert_eq!(roots.roots().len(), 1);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&roots.roots()[0]).unwrap();
    assert!(cert.is_ca());
    assert_eq!(cert.subject().to_string(), "O=example.org");
    assert_eq!(cert.subject(), cert.issuer());
    let years = cert.validity().time_to_expiration().unwrap().whole_days() / 365;
    assert!((9..=10).contains(&years), "{years}");
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1"
    );
    assert!(CertificateAuthority::generate("Bad Domain").is_err());
}

#[test]
fn issued_leaf_has_the_istio_workload_profile() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let want = id("bookinfo", "reviews");
    let cert = ca.issue(&want, DAY).unwrap();
    assert_eq!(cert.id(), &want);
    assert_eq!(cert.chain().len(), 1, "a root CA sends only the leaf");
    assert!(approx(
        cert.not_after(),
        SystemTime::now() + DAY,
        Duration::from_secs(5)
    ));
    assert!(cert.not_before() <= SystemTime::now());
    assert!(cert.is_valid_at(SystemTime::now()));
    let half =
        cert.not_before() + (cert.not_after().duration_since(cert.not_before()).unwrap() / 2);
    assert_eq!(cert.renewal_time(), half);

    let (_, x) = x509_parser::certificate::X509Certificate::from_der(cert.leaf()).unwrap();
    assert!(
        x.subject().as_raw().len() <= 2,
        "empty subject: {}",
        x.subject()
    );
    assert!(!x.is_ca());
    let mut seen = Vec::new();
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                assert!(ext.critical, "SAN is critical when the subject is empty");
                let names: Vec<_> = san.general_names.iter().collect();
                assert_eq!(names.len(), 1);
                assert!(matches!(names[0], GeneralName::URI(u) if *u == want.to_string()));
                seen.push("san");
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(eku.server_auth && eku.client_auth);
                seen.push("eku");
            }
            ParsedExtension::KeyUsage(ku) => {
                assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
                seen.push("ku");
            }
            ParsedExtension::AuthorityKeyIdentifier(_) => seen.push("aki"),
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, ["aki", "eku", "ku", "san"]);
    verify(&cert, &ca.bundle()).unwrap();
}

#[test]
fn issue_refuses_other_trust_domains_bad_ids_and_zero_lifetimes() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let err = ca
        .issue(&SpiffeId::new("other.local", "a", "b"), DAY)
        .unwrap_err();
    assert!(matches!(err, Error::ForeignTrustDomain { .. }), "{err}");
    assert!(err.to_string().contains("spiffe://other.local/ns/a/sa/b"));
    let err = ca.issue(&id("a/b", "c"), DAY).unwrap_err();
    assert!(matches!(err, Error::InvalidSpiffeId { .. }), "{err}");
    let err = ca.issue(&id("a", "b"), Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::Validity(_)), "{err}");
}

#[test]
fn ca_round_trips_through_pem() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let loaded = CertificateAuthority::from_pem(
        ca.cert_pem().as_bytes(),
        ca.key_pem().as_bytes(),
        "cluster.local",
    )
    .unwrap();
    assert_eq!(loaded.bundle(), ca.bundle());
    let cert = loaded.issue(&id("a", "b"), DAY).unwrap();
    verify(&cert, &ca.bundle()).unwrap();
}

#[test]
fn ca_with_a_foreign_key_is_rejected_at_load() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let other = CertificateAuthority::generate("cluster.local").unwrap();
    let err = CertificateAuthority::from_pem(
        ca.cert_pem().as_bytes(),
        other.key_pem().as_bytes(),
        "cluster.local",
    )
    .unwrap_err();
    assert!(matches!(err, Error::CaChain { .. }), "{err}");
    assert!(err.to_string().contains("belong together"), "{err}");
}

#[test]
fn intermediate_ca_sends_its_chain_and_loads_in_both_layouts() {
    let root = CertificateAuthority::generate("cluster.local").unwrap();
    let inter = root.issue_intermediate("cluster-1", 30 * DAY).unwrap();
    assert_eq!(inter.bundle(), root.bundle());
    let cert = inter.issue(&id("a", "b"), DAY).unwrap();
    assert_eq!(cert.chain().len(), 2, "leaf + intermediate");
    verify(&cert, &root.bundle()).unwrap();

    // cert-chain.pem style: intermediate then root.
    let pem = inter.cert_pem();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    let loaded =
        CertificateAuthority::from_pem(pem.as_bytes(), inter.key_pem().as_bytes(), "cluster.local")
            .unwrap();
    verify(&loaded.issue(&id("a", "b"), DAY).unwrap(), &root.bundle()).unwrap();

    // Istio cacerts style: ca-cert.pem + ca-key.pem + root-cert.pem.
    let ca_cert = encoding::certs_to_pem(&cert.chain()[1..]);
    let loaded = CertificateAuthority::from_pem_with_roots(
        ca_cert.as_bytes(),
        inter.key_pem().as_bytes(),
        root.bundle().to_pem().as_bytes(),
        "cluster.local",
    )
    .unwrap();
    let cert = loaded.issue(&id("a", "b"), DAY).unwrap();
    assert_eq!(cert.chain().len(), 2);
    verify(&cert, &root.bundle()).unwrap();

    // Without any root the chain cannot be trusted.
    let err = CertificateAuthority::from_pem(
        ca_cert.as_bytes(),
        inter.key_pem().as_bytes(),
        "cluster.local",
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoRoot), "{err}");
}

#[test]
fn leaves_never_outlive_their_ca() {
    let root = CertificateAuthority::generate("cluster.local").unwrap();
    let inter = root
        .issue_intermediate("short", Duration::from_secs(3600))
        .unwrap();
    let cert = inter.issue(&id("a", "b"), DAY).unwrap();
    assert!(cert.not_after() <= inter.not_after());
    assert!(approx(
        cert.not_after(),
        inter.not_after(),
        Duration::from_secs(1)
    ));
}

#[test]
fn csr_is_signed_for_the_expected_identity_only() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let want = id("bookinfo", "productpage");
    let (csr, key) = new_csr(&want).unwrap();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let chain = ca.sign_csr(csr.as_bytes(), &want, DAY).unwrap();
    let cert = WorkloadCert::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(cert.id(), &want);
    verify(&cert, &ca.bundle()).unwrap();

    let other = id("bookinfo", "reviews");
    let err = ca.sign_csr(csr.as_bytes(), &other, DAY).unwrap_err();
    assert!(matches!(err, Error::CsrIdentity { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("sa/productpage") && msg.contains("sa/reviews"),
        "{msg}"
    );

    let err = ca.sign_csr(b"not a csr", &want, DAY).unwrap_err();
    assert!(matches!(err, Error::Csr { .. }), "{err}");
}

#[test]
fn csr_with_a_broken_signature_is_rejected() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let want = id("a", "b");
    let (csr, _) = new_csr(&want).unwrap();
    let mut der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01; // corrupt the signature
    let tampered = encoding::to_pem("CERTIFICATE REQUEST", [der.as_slice()]);
    let err = ca.sign_csr(tampered.as_bytes(), &want, DAY).unwrap_err();
    assert!(matches!(err, Error::Csr { .. }), "{err}");
}

#[test]
fn workload_cert_round_trips_and_rejects_a_foreign_key() {
    let ca = CertificateAuthority::generate("cluster.local").unwrap();
    let cert = ca.issue(&id("a", "b"), DAY).unwrap();
    let loaded =
        WorkloadCert::from_pem(cert.chain_pem().as_bytes(), cert.key_pem().as_bytes()).unwrap();
    assert_eq!(loaded.id(), cert.id());
    assert_eq!(loaded.chain(), cert.chain());
    assert_eq!(loaded.not_after(), cert.not_after());

    let other = ca.issue(&id("a", "b"), DAY).unwrap();
    let err = WorkloadCert::from_pem(cert.chain_pem().as_bytes(), other.key_pem().as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");

    let debug = format!("{cert:?}");
    assert!(
        debug.contains("<redacted>") && !debug.contains("PRIVATE"),
        "{debug}"
    );
    let key_body: String = cert.key_pem().lines().nth(1).unwrap().to_string();
    assert!(!debug.contains(&key_body));

    let err = WorkloadCert::from_pem(b"", cert.key_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, Error::NoCertificate { .. }), "{err}");
    let err = WorkloadCert::from_pem(cert.chain_pem().as_bytes(), b"").unwrap_err();
    assert!(matches!(err, Error::NoPrivateKey { .. }), "{err}");
}

/// An Istio `cacerts`-style CA made by the openssl CLI: SEC1 key, root from `openssl req -x509`.
#[test]
fn openssl_made_ca_with_sec1_key_signs_verifiable_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ca-key.pem");
    let cert = dir.path().join("ca-cert.pem");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key_path = key.to_str().unwrap();
    let cert_path = cert.to_str().unwrap();
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key_path,
    ]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key_path,
        "-subj",
        "/O=cluster.local",
        "-days",
        "2",
        "-out",
        cert_path,
    ]);
    let key_pem = std::fs::read(&key).unwrap();
    assert!(String::from_utf8_lossy(&key_pem).contains("BEGIN EC PRIVATE KEY"));
    let ca =
        CertificateAuthority::from_pem(&std::fs::read(&cert).unwrap(), &key_pem, "cluster.local")
            .unwrap();
    let leaf = ca.issue(&id("a", "b"), DAY).unwrap();
    verify(&leaf, &ca.bundle()).unwrap();
}
