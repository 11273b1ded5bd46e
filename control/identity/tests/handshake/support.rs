//! Shared helpers: CAs, forged certificates, and an in-memory handshake driver.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_identity::tls::{self, ServerIdentity};
use mesh_identity::{CertificateAuthority, SpiffeId, TrustBundle};
use rcgen::{CertificateParams, DistinguishedName, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, Connection, ServerConfig};
use rustls::{HandshakeKind, ServerConnection};

/// The trust domain of the tests.
pub const TD: &str = "cluster.local";
/// A usual certificate lifetime.
pub const HOUR: Duration = Duration::from_secs(3600);

/// `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
pub fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa)
}

/// A fresh root CA of the tests' trust domain.
pub fn ca() -> CertificateAuthority {
    CertificateAuthority::generate(TD).unwrap()
}

/// A bundle holding the roots of all `cas`.
pub fn bundle_of(cas: &[&CertificateAuthority]) -> TrustBundle {
    let pem: String = cas.iter().map(|c| c.bundle().to_pem()).collect();
    TrustBundle::from_pem(pem.as_bytes()).unwrap()
}

/// The server name HBONE clients use: the destination IP.
pub fn ip_name() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)).into())
}

/// A raw chain + key, for certificates `WorkloadCert` would refuse (no SPIFFE SAN).
pub struct RawCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A leaf with arbitrary SANs signed by `ca`'s key, bypassing the CA's own checks.
pub fn forge(ca: &CertificateAuthority, sans: Vec<SanType>) -> RawCert {
    let ca_key = KeyPair::from_pem(&ca.key_pem()).unwrap();
    let ca_cert = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&ca_cert, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.not_before = (SystemTime::now() - HOUR).into();
    params.not_after = (SystemTime::now() + HOUR).into();
    let cert = params.signed_by(&key, &issuer).unwrap();
    RawCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    }
}

/// A client config built by hand with our server verifier and an arbitrary client certificate
/// (or none).
pub fn custom_client(bundle: &TrustBundle, cert: Option<RawCert>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(tls::server_cert_verifier(
            bundle,
            TD,
            ServerIdentity::AnyInTrustDomain,
        ));
    let mut config = match cert {
        Some(c) => builder.with_client_auth_cert(c.chain, c.key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    Arc::new(config)
}

/// A server config built by hand with our client verifier and an arbitrary certificate.
pub fn custom_server(bundle: &TrustBundle, cert: RawCert) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(tls::client_cert_verifier(bundle, TD).unwrap())
        .with_single_cert(cert.chain, cert.key)
        .unwrap();
    config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    Arc::new(config)
}

/// Both ends of an in-memory handshake and the error each one hit, if any.
pub struct Handshake {
    pub client: ClientConnection,
    pub server: ServerConnection,
    pub client_error: Option<rustls::Error>,
    pub server_error: Option<rustls::Error>,
}

impl Handshake {
    /// Runs a handshake (and delivers the session tickets) between the two configs.
    pub fn run(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Self {
        Self::run_named(client, server, ip_name())
    }

    /// Like [`Handshake::run`] with the given TLS server name.
    pub fn run_named(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: ServerName<'static>,
    ) -> Self {
        let mut c = Connection::Client(ClientConnection::new(client, name).unwrap());
        let mut s = Connection::Server(ServerConnection::new(server).unwrap());
        let (mut client_error, mut server_error) = (None, None);
        for _ in 0..64 {
            let a = transfer(&mut c, &mut s, &mut server_error);
            let b = transfer(&mut s, &mut c, &mut client_error);
            if !a && !b {
                break;
            }
        }
        let (Connection::Client(client), Connection::Server(server)) = (c, s) else {
            unreachable!("built above")
        };
        Self {
            client,
            server,
            client_error,
            server_error,
        }
    }

    /// Panics with both errors unless the handshake completed on both sides.
    pub fn assert_ok(&self) {
        assert!(
            self.client_error.is_none() && self.server_error.is_none(),
            "client: {:?}, server: {:?}",
            self.client_error,
            self.server_error
        );
        assert!(!self.client.is_handshaking() && !self.server.is_handshaking());
    }

    /// The fatal alert the client received from the server.
    pub fn client_received(&self) -> Option<AlertDescription> {
        received(&self.client_error)
    }

    /// The fatal alert the server received from the client.
    pub fn server_received(&self) -> Option<AlertDescription> {
        received(&self.server_error)
    }

    /// Full or resumed, as seen by the client.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.client.handshake_kind()
    }
}

fn received(err: &Option<rustls::Error>) -> Option<AlertDescription> {
    match err {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

/// Moves every pending TLS record from `from` to `to`; true if anything moved.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    to_error: &mut Option<rustls::Error>,
) -> bool {
    let mut moved = false;
    while from.wants_write() {
        let mut buf = Vec::new();
        from.write_tls(&mut buf).unwrap();
        if buf.is_empty() {
            break;
        }
        moved = true;
        let mut rest = &buf[..];
        while to_error.is_none() && !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            if let Err(e) = to.process_new_packets() {
                *to_error = Some(e);
            }
        }
    }
    moved
}

/// A TLS 1.2-only ClientHello record (no supported_versions extension).
pub fn tls12_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03]; // client_version TLS 1.2
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]); // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: [&[u8]; 3] = [
        &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17], // supported_groups: secp256r1
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00],             // ec_point_formats: uncompressed
        &[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03], // signature_algorithms: ecdsa_p256
    ];
    let ext: Vec<u8> = extensions.concat();
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// True if `record` is exactly one plaintext TLS record holding a fatal protocol_version alert
/// (content type 21, length 2, level fatal, description 70). The record version is not checked.
pub fn is_protocol_version_alert(record: &[u8]) -> bool {
    matches!(record, [0x15, 0x03, _, 0x00, 0x02, 0x02, 70])
}
