//! Quick loopback measurement of the HBONE data path, for tuning this crate (the real
//! benchmarks, in network namespaces, live in `benches/`).
//!
//! `cargo run --release -p hbone --example loopback_bench [MiB]` prints throughput and
//! ping-pong latency, direct TCP versus TCP -> outbound proxy -> HBONE -> inbound proxy -> TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use hbone::{ConnectRequest, Connector, Pool, PoolConfig, PoolKey, Responder, TunnelRequest};
use mesh_identity::tls::{ServerIdentity, client_config, server_config};
use mesh_identity::{CertificateAuthority, SpiffeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LIFETIME: Duration = Duration::from_secs(3600);

struct LoopConnector {
    tls: Arc<rustls::ClientConfig>,
}

impl Connector for LoopConnector {
    fn connect(&self, key: &PoolKey) -> BoxFuture<'static, std::io::Result<TcpStream>> {
        let dst = key.dst;
        Box::pin(async move { TcpStream::connect(dst).await })
    }
    fn tls_config(
        &self,
        _key: &PoolKey,
    ) -> Result<Arc<rustls::ClientConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.tls.clone())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mib: usize = std::env::args().nth(1).map_or(Ok(1024), |a| a.parse())?;
    let ca = CertificateAuthority::generate("cluster.local")?;
    let (client_id, server_id) = (
        SpiffeId::new("cluster.local", "default", "client"),
        SpiffeId::new("cluster.local", "default", "server"),
    );
    let server_tls = server_config(&ca.issue(&server_id, LIFETIME)?, &ca.bundle())?;
    let client_tls = client_config(
        &ca.issue(&client_id, LIFETIME)?,
        &ca.bundle(),
        ServerIdentity::OneOf(vec![server_id.clone()]),
    )?;

    let sink = start_sink().await?;
    let pong = start_pong().await?;
    let hbone = start_inbound(server_tls).await?;
    let pool = Pool::new(
        Arc::new(LoopConnector { tls: client_tls }),
        PoolConfig::default(),
    );
    let key = PoolKey {
        src_ip: "127.0.0.1".parse()?,
        src_identity: client_id,
        dst_identity: server_id,
        dst: hbone,
    };
    let out_sink = start_outbound(pool.clone(), key.clone(), sink).await?;
    let out_pong = start_outbound(pool, key, pong).await?;

    let direct = cpu_per_gib("direct", mib, throughput(sink, mib)).await?;
    let proxied = cpu_per_gib("hbone", mib, throughput(out_sink, mib)).await?;
    println!(
        "throughput  direct {direct:8.0} MiB/s  hbone {proxied:8.0} MiB/s  ratio {:.2}",
        proxied / direct
    );
    let direct = parallel(sink, mib / 2, 2).await?;
    let proxied = parallel(out_sink, mib / 2, 2).await?;
    println!(
        "2 flows     direct {direct:8.0} MiB/s  hbone {proxied:8.0} MiB/s  ratio {:.2}",
        proxied / direct
    );
    let direct = ping_pong(pong, 5000).await?;
    let proxied = ping_pong(out_pong, 5000).await?;
    println!(
        "ping-pong p50  direct {:6.1} us  hbone {:6.1} us  added {:6.1} us",
        direct,
        proxied,
        proxied - direct
    );
    Ok(())
}

/// CPU seconds (user + system) this process used so far, from /proc/self/stat (10 ms ticks).
fn cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Runs `f` and prints the CPU it took per GiB moved.
async fn cpu_per_gib<F: std::future::Future<Output = Result<f64>>>(
    what: &str,
    mib: usize,
    f: F,
) -> Result<f64> {
    let before = cpu_secs()?;
    let rate = f.await?;
    let cpu = cpu_secs()? - before;
    println!("  {what:<14} {:6.2} CPU s/GiB", cpu / (mib as f64 / 1024.0));
    Ok(rate)
}

async fn throughput(addr: SocketAddr, mib: usize) -> Result<f64> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    for _ in 0..mib * 4 {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    let mut ack = Vec::new();
    s.read_to_end(&mut ack).await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        ack == (mib as u64 * 1024 * 1024).to_be_bytes(),
        "sink saw other count"
    );
    Ok(mib as f64 / secs)
}

/// Aggregate throughput of `flows` concurrent flows of `mib` each.
async fn parallel(addr: SocketAddr, mib: usize, flows: usize) -> Result<f64> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..flows)
        .map(|_| tokio::spawn(throughput(addr, mib)))
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((mib * flows) as f64 / start.elapsed().as_secs_f64())
}

async fn ping_pong(addr: SocketAddr, rounds: usize) -> Result<f64> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&buf).await?;
        s.read_exact(&mut buf).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[rounds / 2])
}

/// Reads to EOF, then answers with the byte count (u64, big endian).
async fn start_sink() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// Echoes 64-byte messages.
async fn start_pong() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// TCP in, HBONE out: like ztunnel's outbound listener with a fixed destination.
async fn start_outbound(pool: Pool, key: PoolKey, target: SocketAddr) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            let (pool, key) = (pool.clone(), key.clone());
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut req = TunnelRequest::new(target);
                req.forwarded_for = Some(peer);
                match pool.connect(&key, &req).await {
                    Ok(mut tunnel) => {
                        let _ = hbone::copy_bidirectional(&mut s, &mut tunnel).await;
                    }
                    Err(e) => eprintln!("outbound: {e}"),
                }
            });
        }
    });
    Ok(addr)
}

/// HBONE in, TCP out: like ztunnel's inbound listener.
async fn start_inbound(tls: Arc<rustls::ServerConfig>) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handler = Arc::new(|req: ConnectRequest, resp: Responder| async move {
        let Ok(mut up) = TcpStream::connect(req.authority).await else {
            let _ = resp.refuse(http::StatusCode::SERVICE_UNAVAILABLE);
            return;
        };
        let _ = up.set_nodelay(true);
        if let Ok(mut tunnel) = resp.accept() {
            let _ = hbone::copy_bidirectional(&mut up, &mut tunnel).await;
        }
    });
    let opts = hbone::ServeOptions::default();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, handler, opts) = (acceptor.clone(), handler.clone(), opts.clone());
            tokio::spawn(async move {
                let served = async {
                    let (tls, info) =
                        hbone::accept_tls(&acceptor, tcp, Duration::from_secs(5)).await?;
                    let drain = CancellationToken::new();
                    hbone::serve_connection(tls, info, &opts, drain, handler).await
                };
                if let Err(e) = served.await.context("inbound") {
                    eprintln!("{e:#}");
                }
            });
        }
    });
    Ok(addr)
}
