//! How the server answers malformed or refused requests (DESIGN.md 4.1 interop list).

use std::time::Duration;

use anyhow::Result;
use hbone::{ConnectError, ServeOptions, TunnelRequest};
use http::{Method, Request, StatusCode};

use crate::support::*;

const PROTOCOL_ERROR: u32 = 0x1;

async fn status_of(
    pki: &Pki,
    server: std::net::SocketAddr,
    req: Request<()>,
) -> Result<StatusCode> {
    let sender = h2_client(pki, server).await?;
    let mut sender = sender.ready().await?;
    let (response, _send) = sender.send_request(req, true)?;
    let response = tokio::time::timeout(Duration::from_secs(5), response).await??;
    Ok(response.status())
}

#[tokio::test]
async fn non_connect_request_gets_400() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("https://{}/", server.addr))
        .body(())?;
    assert_eq!(
        status_of(&pki, server.addr, req).await?,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

#[tokio::test]
async fn connect_without_port_gets_400() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("127.0.0.1")
        .body(())?;
    assert_eq!(req.uri().authority().map(|a| a.as_str()), Some("127.0.0.1"));
    assert_eq!(
        status_of(&pki, server.addr, req).await?,
        StatusCode::BAD_REQUEST
    );
    Ok(())
}

/// Only `:method` is sent (the h2 client cannot produce this request).
#[tokio::test]
async fn connect_without_authority_gets_400() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let frame = raw_request(&pki, server.addr, &[(":method", "CONNECT")]).await?;
    assert_eq!(raw_status(&frame), Some(400), "got frame {frame:?}");
    Ok(())
}

#[tokio::test]
async fn authority_ip_other_than_local_gets_400_from_handler() -> Result<()> {
    let pki = std::sync::Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let (pool, _) = pool(&pki, hbone::PoolConfig::default());
    let req = TunnelRequest::new("127.0.0.2:80".parse()?);
    let err = pool
        .connect(&key(server.addr, "server"), &req)
        .await
        .unwrap_err();
    match err {
        hbone::PoolError::Tunnel(ConnectError::Refused { status, .. }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST)
        }
        other => panic!("expected a 400 refusal, got {other}"),
    }
    Ok(())
}

#[tokio::test]
async fn header_block_over_64k_gets_431() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let mut req = TunnelRequest::new(echo);
    req.baggage = Some("k=".to_string() + &"v".repeat(70 * 1024));
    let sender = h2_client(&pki, server.addr).await?;
    let err = hbone::client::connect(&sender, &req).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Refused { status, .. } if status == 431),
        "expected 431, got {err}"
    );
    // Just under the limit is fine.
    let mut ok = TunnelRequest::new(echo);
    ok.baggage = Some("k=".to_string() + &"v".repeat(60 * 1024));
    let mut tunnel = hbone::client::connect(&sender, &ok).await?;
    assert_eq!(echo_once(&mut tunnel, b"fits").await?, b"fits");
    Ok(())
}

#[tokio::test]
async fn connect_with_path_is_reset_with_protocol_error() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let frame = raw_request(
        &pki,
        server.addr,
        &[
            (":method", "CONNECT"),
            (":authority", "127.0.0.1:80"),
            (":path", "/x"),
        ],
    )
    .await?;
    assert_eq!(
        rst_code(&frame),
        Some(PROTOCOL_ERROR),
        "got frame {frame:?}"
    );
    Ok(())
}

#[tokio::test]
async fn unparseable_authority_is_reset_with_protocol_error() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    // Not URI syntax (h2 rejects it), and URI syntax that is not <ip>:<port> (we reject it).
    for authority in ["[::1", "bad host:80", "example.com:80", "user@127.0.0.1:80"] {
        let fields = [(":method", "CONNECT"), (":authority", authority)];
        let frame = raw_request(&pki, server.addr, &fields).await?;
        assert_eq!(
            rst_code(&frame),
            Some(PROTOCOL_ERROR),
            "{authority}: got frame {frame:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn garbage_forwarded_and_traceparent_are_tolerated() -> Result<()> {
    let pki = Pki::new();
    let mut server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let sender = h2_client(&pki, server.addr).await?;
    let mut req = TunnelRequest::new(echo).to_http()?;
    req.headers_mut()
        .insert("forwarded", "for=@@nonsense;;==".parse()?);
    req.headers_mut()
        .insert("traceparent", "not-a-trace".parse()?);
    let mut sender = sender.ready().await?;
    let (response, _send) = sender.send_request(req, false)?;
    assert_eq!(response.await?.status(), StatusCode::OK);
    let seen = server
        .requests
        .recv()
        .await
        .expect("request seen by handler");
    assert_eq!(seen.forwarded_for, None);
    assert_eq!(seen.traceparent.as_deref(), Some("not-a-trace"));
    assert_eq!(seen.conn.peer_identity, id("client"));

    // A well-formed header is parsed.
    let mut good = TunnelRequest::new(echo);
    good.forwarded_for = Some("10.1.2.3:4567".parse()?);
    let _tunnel = hbone::client::connect(&sender, &good).await?;
    let seen = server
        .requests
        .recv()
        .await
        .expect("request seen by handler");
    assert_eq!(seen.forwarded_for, Some("10.1.2.3:4567".parse()?));
    assert_eq!(seen.authority, echo);
    Ok(())
}
