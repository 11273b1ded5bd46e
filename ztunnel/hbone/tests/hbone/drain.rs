//! Graceful shutdown: GOAWAY(NO_ERROR), a drain period for open tunnels, then close.

use std::time::{Duration, Instant};

use anyhow::Result;
use hbone::{ServeOptions, TunnelRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn opts(drain_period: Duration) -> ServeOptions {
    ServeOptions {
        drain_period,
        ..ServeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_sends_goaway_and_lets_open_tunnels_finish() -> Result<()> {
    let pki = Pki::new();
    let mut server = start_server(&pki, "server", Mode::Proxy, opts(Duration::from_secs(30))).await;
    let echo = start_echo().await;
    let sender = h2_client(&pki, server.addr).await?;
    let mut tunnel = hbone::client::connect(&sender, &TunnelRequest::new(echo)).await?;

    server.drain.cancel();
    // A new stream on the draining connection is refused with GOAWAY(NO_ERROR).
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match hbone::client::connect(&sender, &TunnelRequest::new(echo)).await {
                Err(hbone::ConnectError::H2 { source, .. }) => return source,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    })
    .await?;
    assert!(refused.is_go_away(), "{refused}");
    assert_eq!(refused.reason(), Some(h2::Reason::NO_ERROR));

    // The open tunnel still works during the drain period...
    assert_eq!(echo_once(&mut tunnel, b"still here").await?, b"still here");
    // ...and once it is finished the connection closes without waiting out the period.
    tunnel.shutdown().await?;
    let mut rest = Vec::new();
    tunnel.read_to_end(&mut rest).await?;
    drop(tunnel);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), server.ended.recv()).await?;
    assert!(matches!(ended, Some(Ok(()))), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_expiry_closes_open_tunnels() -> Result<()> {
    let pki = Pki::new();
    let period = Duration::from_millis(300);
    let mut server = start_server(&pki, "server", Mode::Proxy, opts(period)).await;
    let echo = start_echo().await;
    let sender = h2_client(&pki, server.addr).await?;
    let mut tunnel = hbone::client::connect(&sender, &TunnelRequest::new(echo)).await?;
    assert_eq!(echo_once(&mut tunnel, b"before").await?, b"before");

    let started = Instant::now();
    server.drain.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), server.ended.recv()).await?;
    assert!(matches!(ended, Some(Ok(()))), "{ended:?}");
    assert!(
        started.elapsed() >= period,
        "closed before the drain period ran out"
    );
    // The tunnel that outlived the period is gone: writing or reading fails or ends.
    let mut buf = [0u8; 8];
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tunnel.write_all(b"after").await;
        tunnel.read(&mut buf).await
    })
    .await?;
    assert!(
        matches!(outcome, Ok(0) | Err(_)),
        "tunnel still alive: {outcome:?}"
    );
    Ok(())
}
