use std::io::Write;
use std::process::{Command, Stdio};

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;

use super::*;
use crate::{encoding, tls};

/// Runs `openssl` with `args`, feeding `stdin`, and returns stdout.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Converts `traditional_pem` ourselves and with `openssl pkcs8 -topk8`, and checks both give the
/// same key pair, usable by rcgen and by the TLS provider.
fn assert_converts_like_openssl(traditional_pem: &[u8], block: &str) {
    assert!(String::from_utf8_lossy(traditional_pem).contains(block));
    let ours = encoding::key_from_pem(traditional_pem, "test key").unwrap();
    let reference_pem = openssl(&["pkcs8", "-topk8", "-nocrypt"], traditional_pem);
    let reference = PrivatePkcs8KeyDer::from_pem_slice(&reference_pem).unwrap();
    let ours_pair = KeyPair::try_from(&ours).unwrap();
    let reference_pair = KeyPair::try_from(&reference).unwrap();
    assert_eq!(ours_pair.public_key_raw(), reference_pair.public_key_raw());
    tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(ours))
        .unwrap();
}

#[test]
fn sec1_ec_key_becomes_equivalent_pkcs8() {
    let sec1 = openssl(
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
        b"",
    );
    assert_converts_like_openssl(&sec1, "BEGIN EC PRIVATE KEY");
}

#[test]
fn sec1_p384_key_becomes_equivalent_pkcs8() {
    let sec1 = openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout"], b"");
    assert_converts_like_openssl(&sec1, "BEGIN EC PRIVATE KEY");
}

#[test]
fn pkcs1_rsa_key_becomes_equivalent_pkcs8() {
    let pkcs1 = openssl(&["genrsa", "-traditional", "2048"], b"");
    assert_converts_like_openssl(&pkcs1, "BEGIN RSA PRIVATE KEY");
}

#[test]
fn pkcs8_passes_through_unchanged() {
    let key = KeyPair::generate().unwrap();
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    let converted = to_pkcs8(&PrivateKeyDer::Pkcs8(der.clone_key())).unwrap();
    assert_eq!(converted.secret_pkcs8_der(), der.secret_pkcs8_der());
}

#[test]
fn sec1_without_curve_is_rejected_with_advice() {
    // ECPrivateKey { version 1, privateKey } and nothing else: no [0] parameters.
    let body = [tlv(TAG_INTEGER, &[1]), tlv(TAG_OCTET_STRING, &[7; 32])].concat();
    let der = tlv(TAG_SEQUENCE, &body);
    let err = to_pkcs8(&PrivateKeyDer::Sec1(der.into())).unwrap_err();
    assert!(err.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn der_lengths_round_trip() {
    for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
        let content = vec![0xab; len];
        let encoded = tlv(TAG_OCTET_STRING, &content);
        let (tag, body, rest) = read_tlv(&encoded).unwrap();
        assert_eq!((tag, body.len(), rest.len()), (TAG_OCTET_STRING, len, 0));
    }
    assert!(read_tlv(&[TAG_SEQUENCE, 0x05, 1, 2]).is_none());
    assert!(read_tlv(&[TAG_SEQUENCE, 0x85, 1, 2, 3, 4, 5]).is_none());
    assert!(read_tlv(&[]).is_none());
}
