//! The client pool: reuse, single-flight, spreading, stream limit, idle release, identity,
//! keepalive.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use hbone::{DialError, PoolConfig, PoolError, ServeOptions};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reuses_one_connection_for_many_tunnels() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let (pool, connector) = pool(&pki, PoolConfig::default());
    let k = key(server.addr, "server");
    for i in 0..20 {
        let mut tunnel = pool.connect(&k, &tunnel_req(echo)).await?;
        let msg = format!("tunnel {i}");
        assert_eq!(
            echo_once(&mut tunnel, msg.as_bytes()).await?,
            msg.as_bytes()
        );
    }
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(connector.dials.load(Ordering::SeqCst), 1);
    assert_eq!(pool.connections(&k), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_tunnels_cause_a_single_dial() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let cfg = PoolConfig {
        parallel_connections: 1,
        ..PoolConfig::default()
    };
    let (pool, connector) = pool(&pki, cfg);
    let k = key(server.addr, "server");
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (pool, k) = (pool.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            pool.connect(&k, &tunnel_req(echo)).await
        }));
    }
    let mut tunnels = Vec::new();
    for t in tasks {
        tunnels.push(t.await??);
    }
    assert_eq!(connector.dials.load(Ordering::SeqCst), 1);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(echo_once(&mut tunnels[29], b"ok").await?, b"ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tunnels_spread_over_parallel_connections() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let (pool, _) = pool(&pki, PoolConfig::default()); // parallel_connections = 2
    let k = key(server.addr, "server");
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(pool.connect(&k, &tunnel_req(echo)).await?);
    }
    assert_eq!(pool.connections(&k), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_connections_make_the_pool_open_another() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let cfg = PoolConfig {
        max_streams_per_conn: 3,
        parallel_connections: 1,
        ..PoolConfig::default()
    };
    let (pool, _) = pool(&pki, cfg);
    let k = key(server.addr, "server");
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(pool.connect(&k, &tunnel_req(echo)).await?);
    }
    assert_eq!(pool.connections(&k), 3);
    for t in &mut held {
        assert_eq!(echo_once(t, b"x").await?, b"x");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_retries_on_a_new_connection_after_goaway() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let cfg = PoolConfig {
        parallel_connections: 1,
        ..PoolConfig::default()
    };
    let (pool, connector) = pool(&pki, cfg);
    let k = key(server.addr, "server");
    // An open tunnel keeps the first connection alive through its drain period.
    let mut first = pool.connect(&k, &tunnel_req(echo)).await?;
    server.drain_existing();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pool still lists the draining connection; the CONNECT on it meets the GOAWAY and
    // is retried on a fresh connection.
    let mut second = pool.connect(&k, &tunnel_req(echo)).await?;
    assert_eq!(echo_once(&mut second, b"second").await?, b"second");
    assert_eq!(echo_once(&mut first, b"first").await?, b"first");
    assert_eq!(connector.dials.load(Ordering::SeqCst), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_released_and_redialed() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let mut server = start_server(&pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let cfg = PoolConfig {
        idle_timeout: Duration::from_millis(200),
        ..PoolConfig::default()
    };
    let (pool, connector) = pool(&pki, cfg);
    let k = key(server.addr, "server");
    let mut tunnel = pool.connect(&k, &tunnel_req(echo)).await?;
    assert_eq!(echo_once(&mut tunnel, b"one").await?, b"one");
    // An open tunnel keeps the connection however long it lasts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.connections(&k), 1);
    drop(tunnel);
    // Released after the idle timeout: the server sees the connection end cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(5), server.ended.recv()).await?;
    assert!(matches!(ended, Some(Ok(()))), "{ended:?}");
    assert_eq!(pool.connections(&k), 0);
    let mut tunnel = pool.connect(&k, &tunnel_req(echo)).await?;
    assert_eq!(echo_once(&mut tunnel, b"two").await?, b"two");
    assert_eq!(connector.dials.load(Ordering::SeqCst), 2);
    assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_unexpected_identity_is_refused() -> Result<()> {
    let pki = Arc::new(Pki::new());
    let server = start_server(&pki, "impostor", Mode::Proxy, ServeOptions::default()).await;
    let echo = start_echo().await;
    let (pool, _) = pool(&pki, PoolConfig::default());
    let err = pool
        .connect(&key(server.addr, "server"), &tunnel_req(echo))
        .await
        .expect_err("server identity must be checked");
    match &err {
        PoolError::Dial(e) => assert!(matches!(**e, DialError::Tls { .. }), "{e}"),
        other => panic!("expected a TLS failure, got {other}"),
    }
    // A foreign CA is refused as well, even for the right name.
    let other_pki = Pki::new();
    let foreign = start_server(&other_pki, "server", Mode::Proxy, ServeOptions::default()).await;
    let err = pool
        .connect(&key(foreign.addr, "server"), &tunnel_req(echo))
        .await;
    assert!(matches!(err, Err(PoolError::Dial(_))), "{err:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_peer_is_dropped_by_keepalive() -> Result<()> {
    let pki = Arc::new(Pki::new());
    // A peer that completes TLS and the HTTP/2 handshake, then never reads again.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_tls("server"));
    let (hold_tx, mut hold_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let tls = acceptor.accept(tcp).await?;
        let conn = h2::server::handshake(tls).await?;
        hold_tx.send(conn)?; // kept alive, never polled
        anyhow::Ok(())
    });
    // The CONNECT times out (300 ms) before the first PING is even sent (400 ms).
    let cfg = PoolConfig {
        keepalive_interval: Duration::from_millis(400),
        keepalive_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(300),
        ..PoolConfig::default()
    };
    let (pool, _) = pool(&pki, cfg);
    let k = key(addr, "server");
    // The CONNECT is never answered; the pool's timeout reports that.
    let err = pool.connect(&k, &tunnel_req("127.0.0.1:9".parse()?)).await;
    assert!(matches!(err, Err(PoolError::Timeout { .. })), "{err:?}");
    let _held = hold_rx.recv().await;
    // Keepalive notices the dead peer and drops the connection from the pool.
    tokio::time::timeout(Duration::from_secs(5), async {
        while pool.connections(&k) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    Ok(())
}
