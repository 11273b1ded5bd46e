//! The same handshakes over loopback TCP with tokio-rustls, as hbone runs them.

use std::sync::Arc;

use mesh_identity::tls::{ServerIdentity, client_config, peer_identity, server_config};
use rustls::{AlertDescription, HandshakeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::support::*;

/// What the server saw of one accepted connection.
struct Accepted {
    kind: Option<HandshakeKind>,
    peer: Option<mesh_identity::SpiffeId>,
}

/// Accepts `n` TLS connections; on each, reads a line-less "ping" and answers "pong".
async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    n: usize,
) -> Vec<Result<Accepted, std::io::Error>> {
    let acceptor = TlsAcceptor::from(config);
    let mut seen = Vec::new();
    for _ in 0..n {
        let (tcp, _) = listener.accept().await.unwrap();
        let result = async {
            let mut tls = acceptor.accept(tcp).await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(b"pong").await?;
            tls.flush().await?;
            let (_, conn) = tls.get_ref();
            Ok(Accepted {
                kind: conn.handshake_kind(),
                peer: conn.peer_certificates().and_then(|c| peer_identity(c).ok()),
            })
        }
        .await;
        seen.push(result);
    }
    seen
}

#[tokio::test]
async fn tcp_handshake_then_resumed_reconnect() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let client_cert = ca.issue(&id("ns", "client"), HOUR).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(
        listener,
        server_config(&server_cert, &ca.bundle()).unwrap(),
        2,
    ));

    let connector = TlsConnector::from(
        client_config(
            &client_cert,
            &ca.bundle(),
            ServerIdentity::OneOf(vec![id("ns", "server")]),
        )
        .unwrap(),
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(ip_name(), tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        // Reading also processes the session tickets the server sent after the handshake.
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            peer_identity(conn.peer_certificates().unwrap()).unwrap(),
            id("ns", "server")
        );
        kinds.push(conn.handshake_kind());
    }
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)]
    );

    let seen = server.await.unwrap();
    let seen: Vec<Accepted> = seen.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(seen[1].kind, Some(HandshakeKind::Resumed));
    for s in &seen {
        assert_eq!(s.peer, Some(id("ns", "client")));
    }
    assert_eq!(seen[0].kind, Some(HandshakeKind::Full));
}

#[tokio::test]
async fn tcp_tls12_client_gets_protocol_version() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(
        listener,
        server_config(&server_cert, &ca.bundle()).unwrap(),
        1,
    ));

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls12_client_hello()).await.unwrap();
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    assert!(is_protocol_version_alert(&reply), "{reply:02x?}");
    assert!(server.await.unwrap()[0].is_err());
}

#[tokio::test]
async fn tcp_client_without_certificate_gets_certificate_required() {
    let ca = ca();
    let server_cert = ca.issue(&id("ns", "server"), HOUR).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(
        listener,
        server_config(&server_cert, &ca.bundle()).unwrap(),
        1,
    ));

    let connector = TlsConnector::from(custom_client(&ca.bundle(), None));
    let tcp = TcpStream::connect(addr).await.unwrap();
    // In TLS 1.3 the client finishes first; the server's verdict arrives on the next read.
    let mut tls = connector.connect(ip_name(), tcp).await.unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    let err = tls.read_exact(&mut buf).await.unwrap_err();
    let rustls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {err:?}"));
    assert_eq!(
        rustls_err,
        &rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
    );
    assert!(server.await.unwrap()[0].is_err());
}
