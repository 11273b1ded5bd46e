//! `relay_tcp`: a bulk relay moves to another runtime (a second worker) and keeps every byte;
//! request/response traffic stays; cancelling the relay stops the moved half too.

use std::time::Duration;

use anyhow::{Context, Result};
use hbone::{CopyError, Offload, Transferred};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::*;

/// A second single-threaded runtime on its own thread, like a second ztunnel worker.
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = rt.block_on(stopped);
        });
        Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An application socket whose other end is relayed through a tunnel to an echo upstream.
async fn relayed_app(
    offload: Option<Offload>,
) -> Result<(TcpStream, JoinHandle<Result<Transferred, CopyError>>)> {
    let (tunnel, pool, server) = echo_tunnel().await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (app, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    let (proxied, _) = accepted?;
    // The pool and server stay alive with the tasks they spawned; the relay owns its ends.
    std::mem::forget(server);
    let relay = tokio::spawn(async move {
        let _pool = pool;
        hbone::relay_tcp(proxied, tunnel, offload).await
    });
    Ok((app?, relay))
}

/// Moves to `worker` once any 1 MiB has been relayed: early in every transfer of these tests.
fn eager(worker: &Worker) -> Offload {
    Offload::new(worker.handle.clone()).with_window(1 << 20, Duration::from_secs(3600))
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_relay_moves_to_the_other_worker_and_keeps_every_byte_in_order() -> Result<()> {
    const TOTAL: usize = 32 << 20;
    let worker = Worker::start();
    let (app, relay) = relayed_app(Some(eager(&worker))).await?;
    let (mut rd, mut wr) = app.into_split();
    let writer = tokio::spawn(async move {
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        for chunk in data.chunks(100_000) {
            wr.write_all(chunk).await?;
        }
        wr.shutdown().await?;
        std::io::Result::Ok(wr)
    });
    let mut got = 0usize;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, pattern(got + k), "byte {} changed", got + k);
        }
        got += n;
    }
    assert_eq!(got, TOTAL, "every byte came back, then end of stream");
    let _wr = writer.await??;
    let t = relay.await?.context("relay")?;
    assert_eq!((t.to_tunnel, t.from_tunnel), (TOTAL as u64, TOTAL as u64));
    assert!(t.offloaded, "the bulk relay moved to the other worker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_traffic_stays_on_its_worker() -> Result<()> {
    let worker = Worker::start();
    // Default thresholds: 4 MiB within 20 ms. 3,000 round trips of 1 KiB relay 6 MiB, so the
    // meter completes a window and judges it, but one message at a time is never bulk.
    let (mut app, relay) = relayed_app(Some(Offload::new(worker.handle.clone()))).await?;
    let msg = vec![7u8; 1024];
    let mut back = vec![0u8; 1024];
    for _ in 0..3000 {
        app.write_all(&msg).await?;
        app.read_exact(&mut back).await?;
        assert_eq!(back, msg);
    }
    app.shutdown().await?;
    assert_eq!(app.read(&mut back).await?, 0);
    let t = relay.await?.context("relay")?;
    assert_eq!(t.to_tunnel, 3000 * 1024);
    assert!(!t.offloaded, "an interactive relay stays where it is");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_relay_stops_its_moved_half() -> Result<()> {
    let worker = Worker::start();
    let (mut app, relay) = relayed_app(Some(eager(&worker))).await?;
    let data = vec![1u8; 2 << 20];
    let mut back = vec![0u8; data.len()];
    app.write_all(&data).await?;
    app.read_exact(&mut back).await?;
    // 4 MiB relayed: the relay has moved (or moves at its next idle point).
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.abort();
    // The moved half owns the socket: once it stops, the application sees the connection end
    // (the echo upstream would otherwise keep it open forever).
    let mut one = [0u8; 1];
    let ended = tokio::time::timeout(Duration::from_secs(10), app.read(&mut one)).await;
    match ended {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => anyhow::bail!("unexpected {n} bytes after cancelling"),
        Err(_) => anyhow::bail!("the moved relay kept the connection open after cancelling"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_relay_passes_on_an_early_half_close_and_the_whole_echo() -> Result<()> {
    const TOTAL: usize = 8 << 20;
    let worker = Worker::start();
    let (app, relay) = relayed_app(Some(eager(&worker))).await?;
    let (mut rd, mut wr) = app.into_split();
    // Everything is written and the write side closed before a byte is read back, so the
    // half-close reaches the relay while the echo is still on its way (before or after the
    // move, depending on timing): END_STREAM must still go out, and the echo come back whole.
    let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await?;
        wr.shutdown().await?;
        std::io::Result::Ok(wr)
    });
    let mut back = Vec::with_capacity(TOTAL);
    rd.read_to_end(&mut back).await?;
    let _wr = writer.await??;
    assert_eq!(back.len(), TOTAL);
    assert!(back.iter().enumerate().all(|(i, b)| *b == pattern(i)));
    let t = relay.await?.context("relay")?;
    assert_eq!((t.to_tunnel, t.from_tunnel), (TOTAL as u64, TOTAL as u64));
    assert!(t.offloaded);
    Ok(())
}
