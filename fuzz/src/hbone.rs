//! `hbone_wire`: the bytes a verified peer sends on an HBONE connection after the TLS handshake
//! (HTTP/2 preface, frames, CONNECT requests), fed to the real server loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hbone::server::{ConnInfo, ConnectRequest, Responder, ServeOptions, serve_connection};
use http::StatusCode;
use mesh_identity::SpiffeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long one input may take. The client's half-close ends the connection, so the server must
/// be done long before: running out is a hang (a connection a peer can keep open for nothing).
const LIMIT: Duration = Duration::from_secs(10);
/// Yields that let the server and the handlers answer what was sent (each yield runs every
/// ready task of the single-threaded runtime once).
const SETTLE_YIELDS: usize = 64;
/// Bytes an accepted tunnel echoes back before it ends.
const ECHO_LIMIT: usize = 64 * 1024;

/// Serves `data` as everything the client sent, then the client's half-close.
pub fn hbone_wire(data: &[u8]) {
    hbone_connects(data);
}

/// [`hbone_wire`], returning how many requests passed validation and reached the handler.
pub fn hbone_connects(data: &[u8]) -> usize {
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let handler = move |req: ConnectRequest, responder: Responder| {
        counter.fetch_add(1, Ordering::Relaxed);
        handle(req, responder)
    };
    crate::runtime().block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let info = ConnInfo {
            peer_identity: SpiffeId::new("cluster.local", "fuzz", "client"),
            peer_addr: ([10, 0, 0, 1], 40_000).into(),
            local_addr: ([10, 0, 0, 2], 15_008).into(),
        };
        let opts = ServeOptions::default();
        let serve = serve_connection(
            server,
            info,
            &opts,
            CancellationToken::new(),
            Arc::new(handler),
        );
        let feed = async {
            let _ = to_server.write_all(data).await;
            // h2 drops requests it has not handed out yet once the socket closes, as a client
            // that hung up wants; a real client waits for its answers, so wait for the server.
            settle().await;
            let _ = to_server.shutdown().await;
        };
        let drain = async {
            let _ = tokio::io::copy(&mut from_server, &mut tokio::io::sink()).await;
        };
        let all = tokio::time::timeout(LIMIT, async { tokio::join!(serve, feed, drain) }).await;
        assert!(
            all.is_ok(),
            "the HBONE server kept a closed connection open"
        );
    });
    handled.load(Ordering::Relaxed)
}

/// Gives every task of the runtime a chance to run until nothing is left to do for now.
async fn settle() {
    for _ in 0..SETTLE_YIELDS {
        tokio::task::yield_now().await;
    }
}

/// What ztunnel's handler could do with a request: refuse, reset, or accept and relay.
async fn handle(req: ConnectRequest, responder: Responder) {
    assert_ne!(
        req.authority.port(),
        0,
        "a CONNECT to port 0 passed validation"
    );
    match req.authority.port() % 3 {
        0 => drop(responder.refuse(StatusCode::FORBIDDEN)),
        1 => responder.reset(h2::Reason::REFUSED_STREAM),
        _ => {
            let Ok(mut tunnel) = responder.accept() else {
                return;
            };
            let mut buf = vec![0u8; ECHO_LIMIT];
            let mut echoed = 0;
            while echoed < ECHO_LIMIT {
                match tunnel.read(&mut buf[echoed..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tunnel.write_all(&buf[echoed..echoed + n]).await.is_err() {
                            return;
                        }
                        echoed += n;
                    }
                }
            }
            let _ = tunnel.shutdown().await;
        }
    }
}

/// What a real HTTP/2 client sends for a few requests: valid CONNECTs with the optional headers,
/// one with port 0 and one that is not a CONNECT. The fuzzer mutates from here.
pub fn hbone_seed() -> Vec<u8> {
    crate::runtime().block_on(async {
        let (client_io, mut capture) = tokio::io::duplex(1 << 20);
        let Ok((mut send, conn)) = h2::client::handshake(client_io).await else {
            return Vec::new();
        };
        let driver = tokio::spawn(conn);
        let requests = [
            ("CONNECT", "10.0.0.2:8080"),
            ("CONNECT", "10.0.0.2:8081"),
            ("CONNECT", "10.0.0.2:8082"),
            ("CONNECT", "10.0.0.2:0"),
            ("GET", "http://10.0.0.2:8080/"),
        ];
        // Kept until the bytes are captured: dropping a request's handles resets its stream.
        let mut open = Vec::new();
        for (method, uri) in requests {
            let req = http::Request::builder()
                .method(method)
                .uri(uri)
                .header("forwarded", "for=\"10.0.0.1:40000\"")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .header("baggage", "k8s.namespace.name=fuzz")
                .body(());
            let Ok(req) = req else { continue };
            if let Ok((response, mut body)) = send.send_request(req, false) {
                let _ = body.send_data(Bytes::from_static(b"hello through the tunnel"), true);
                open.push((response, body));
            }
        }
        // Lets the connection task write everything (it needs no answer from the server).
        settle().await;
        drop(send);
        driver.abort();
        drop(open);
        let _ = driver.await;
        let mut out = Vec::new();
        let _ = capture.read_to_end(&mut out).await;
        out
    })
}
