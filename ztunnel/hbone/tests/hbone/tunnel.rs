//! Tunnels: round trips, half-close, early data, resets, back-pressure, many streams.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hbone::{PoolConfig, ServeOptions, TunnelRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_tunnel() -> Result<()> {
    let (mut tunnel, _pool, _server) = echo_tunnel().await?;
    assert_eq!(
        echo_once(&mut tunnel, b"hello hbone").await?,
        b"hello hbone"
    );
    assert_eq!(echo_once(&mut tunnel, b"second").await?, b"second");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_keeps_every_byte_in_order() -> Result<()> {
    let (tunnel, _pool, _server) = echo_tunnel().await?;
    let (mut rd, mut wr) = tokio::io::split(tunnel);
    const TOTAL: usize = 24 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        while sent < TOTAL {
            let chunk: Vec<u8> = (sent..sent + 100_000).map(|i| (i % 251) as u8).collect();
            wr.write_all(&chunk).await?;
            sent += chunk.len();
        }
        wr.shutdown().await?;
        anyhow::Ok(sent)
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, ((got + i) % 251) as u8, "byte {} corrupted", got + i);
        }
        got += n;
    }
    let sent = writer.await??;
    assert_eq!(got, sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_reaches_upstream_and_comes_back() -> Result<()> {
    let (mut tunnel, _pool, _server) = echo_tunnel().await?;
    tunnel.write_all(b"last words").await?;
    tunnel.shutdown().await?;
    // The echo upstream only half-closes after it saw our EOF, so reading to the end proves
    // END_STREAM went through the server to the upstream and its FIN came back.
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut back)).await??;
    assert_eq!(back, b"last words");
    assert!(
        tunnel.write_all(b"x").await.is_err(),
        "write after shutdown must fail"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_half_close_first_keeps_other_direction_open() -> Result<()> {
    let pki = std::sync::Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    // Upstream: sends a banner, half-closes, then reads what the client sends until EOF.
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await?;
        s.write_all(b"banner").await?;
        s.shutdown().await?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await?;
        let _ = got_tx.send(got);
        anyhow::Ok(())
    });
    let (pool, _) = pool(&pki, PoolConfig::default());
    let mut tunnel = pool
        .connect(&key(server.addr, "server"), &tunnel_req(upstream_addr))
        .await?;
    let mut banner = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut banner)).await??;
    assert_eq!(banner, b"banner", "server-side half-close must read as EOF");
    tunnel.write_all(b"after your EOF").await?;
    tunnel.shutdown().await?;
    let got = tokio::time::timeout(Duration::from_secs(5), got_rx).await??;
    assert_eq!(got, b"after your EOF");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_before_200_is_delivered() -> Result<()> {
    let pki = Pki::new();
    let delay = Mode::DelayedProxy(Duration::from_millis(200));
    let server = start_server(&pki, "server", delay, ServeOptions::default()).await;
    let echo = start_echo().await;
    let sender = h2_client(&pki, server.addr).await?;
    let mut sender = sender.ready().await?;
    let (response, mut send) = sender.send_request(TunnelRequest::new(echo).to_http()?, false)?;
    send.send_data(Bytes::from_static(b"early bytes"), false)?;
    let response = tokio::time::timeout(Duration::from_secs(5), response).await??;
    assert_eq!(response.status(), 200);
    let mut tunnel = hbone::H2Stream::new(send, response.into_body());
    let mut back = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut back)).await??;
    assert_eq!(&back, b"early bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reset_is_an_io_error() -> Result<()> {
    let pki = std::sync::Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Reset, ServeOptions::default()).await;
    let (pool, _) = pool(&pki, PoolConfig::default());
    let target = "127.0.0.1:9".parse()?;
    let mut tunnel = pool
        .connect(&key(server.addr, "server"), &tunnel_req(target))
        .await?;
    let mut buf = [0u8; 16];
    let err = tokio::time::timeout(Duration::from_secs(5), tunnel.read(&mut buf))
        .await?
        .expect_err("a reset stream must not read as EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_waits_when_peer_stops_reading() -> Result<()> {
    let pki = std::sync::Arc::new(Pki::new());
    let mut server = start_server(&pki, "server", Mode::Stall, ServeOptions::default()).await;
    // One connection, so the second tunnel below shares it with the stalled one.
    let cfg = PoolConfig {
        parallel_connections: 1,
        ..PoolConfig::default()
    };
    let (stream_window, send_buffer) = (cfg.h2.stream_window as usize, cfg.h2.max_send_buffer);
    let (pool, _) = pool(&pki, cfg);
    let k = key(server.addr, "server");
    let target = "127.0.0.1:9".parse()?;
    let mut tunnel = pool.connect(&k, &tunnel_req(target)).await?;
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), tunnel.write(&chunk)).await {
            Ok(n) => written += n?,
            Err(_) => break, // blocked: back-pressure
        }
        assert!(
            written <= 64 * 1024 * 1024,
            "writer never blocked: unbounded buffering"
        );
    }
    // In flight is bounded by the peer's stream window plus h2's per-stream send buffer.
    assert!(
        written >= stream_window / 2,
        "only {written} bytes flowed before blocking"
    );
    assert!(
        written <= stream_window + send_buffer + chunk.len(),
        "{written} bytes accepted with a {stream_window} byte window"
    );
    // Another tunnel on the same connection is not blocked by the stalled one.
    let echo = start_echo().await;
    let mut other = pool.connect(&k, &tunnel_req(echo)).await?;
    assert_eq!(
        echo_once(&mut other, b"still flowing").await?,
        b"still flowing"
    );
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    // Once the peer reads, the writer resumes and every byte arrives.
    let mut stalled = server.stalled.recv().await.expect("stalled tunnel");
    let reader = tokio::spawn(async move {
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stalled.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(total);
            }
            total += n;
        }
    });
    tunnel.write_all(&chunk).await?;
    written += chunk.len();
    tunnel.shutdown().await?;
    let total = tokio::time::timeout(Duration::from_secs(10), reader).await???;
    assert_eq!(total, written);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_concurrent_streams_on_one_connection() -> Result<()> {
    let pki = Pki::new();
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let sender = h2_client(&pki, server.addr).await?;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let mut tunnel = hbone::client::connect(&sender, &TunnelRequest::new(echo)).await?;
            let msg = format!("stream number {i}");
            // Hold every stream open until all are up, so they are truly concurrent.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let back = echo_once(&mut tunnel, msg.as_bytes()).await?;
            anyhow::ensure!(back == msg.as_bytes(), "stream {i} got {back:?}");
            anyhow::Ok(tunnel)
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await??);
    }
    assert_eq!(open.len(), 60);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    Ok(())
}
