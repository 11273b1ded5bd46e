//! A plain TCP relay: accept on one address, connect to another, copy bytes both ways. No TLS,
//! no HTTP/2, no policy. The benchmark harness puts one in each pod to measure what three TCP
//! legs and two user-space hops cost on their own (the floor under any sidecar-less proxy).

use std::net::SocketAddr;
use std::str::FromStr;

use tokio::io::copy_bidirectional_with_sizes;
use tokio::net::{TcpListener, TcpStream};

/// Read size in each direction; the same as ztunnel's largest socket read.
const BUF_SIZE: usize = 256 * 1024;

/// One listening address and where its connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address each accepted connection is relayed to.
    pub to: SocketAddr,
}

impl FromStr for Route {
    type Err = String;

    /// `LISTEN=TO`, e.g. `127.0.0.1:25201=10.2.0.2:15201`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (listen, to) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not LISTEN=TO"))?;
        let parse = |a: &str| {
            a.parse::<SocketAddr>()
                .map_err(|e| format!("`{a}` in `{s}` is not an address: {e}"))
        };
        Ok(Route {
            listen: parse(listen)?,
            to: parse(to)?,
        })
    }
}

/// Binds every route, calls `ready` once all listen, then relays until the process ends.
pub fn relay(
    routes: &[Route],
    workers: usize,
    ready: impl FnOnce(&[SocketAddr]),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_io()
        .build()?;
    rt.block_on(async {
        let mut listeners = Vec::with_capacity(routes.len());
        for r in routes {
            let l = TcpListener::bind(r.listen).await?;
            listeners.push((l, r.to));
        }
        let addrs = listeners
            .iter()
            .map(|(l, _)| l.local_addr())
            .collect::<std::io::Result<Vec<_>>>()?;
        ready(&addrs);
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, to) in listeners {
            tasks.spawn(accept_loop(listener, to));
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                return Err(e);
            }
        }
        Ok(())
    })
}

async fn accept_loop(listener: TcpListener, to: SocketAddr) -> std::io::Result<()> {
    loop {
        let (inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A failed connection only ends that connection: the client sees the close.
            let _ = relay_one(inbound, to).await;
        });
    }
}

async fn relay_one(mut inbound: TcpStream, to: SocketAddr) -> std::io::Result<()> {
    let mut outbound = TcpStream::connect(to).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    copy_bidirectional_with_sizes(&mut inbound, &mut outbound, BUF_SIZE, BUF_SIZE).await?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn route_parses_and_rejects_garbage() {
        let r: Route = "127.0.0.1:1=10.0.0.1:2".parse().unwrap();
        assert_eq!(r.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(r.to, "10.0.0.1:2".parse().unwrap());
        assert!("127.0.0.1:1".parse::<Route>().is_err());
        assert!("x=10.0.0.1:2".parse::<Route>().is_err());
    }

    #[test]
    fn relays_both_ways_with_half_close() {
        echo_through(b"through the relay".to_vec(), |route, ready| {
            let _ = relay(&[route], 1, ready);
        });
    }

    /// Test scaffolding shared by the relays: starts an echo server and `run` (a relay to it),
    /// sends `payload` through the relay, half-closes, and checks the echo.
    pub(in crate::testapp) fn echo_through(
        payload: Vec<u8>,
        run: impl FnOnce(Route, &mut dyn FnMut(&[SocketAddr])) + Send + 'static,
    ) {
        use std::io::{Read, Write};
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got).unwrap();
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let route = Route {
            listen: "127.0.0.1:0".parse().unwrap(),
            to,
        };
        std::thread::spawn(move || {
            run(route, &mut |addrs| {
                let _ = tx.send(addrs[0]);
            })
        });
        let via = rx.recv().unwrap();
        let mut c = std::net::TcpStream::connect(via).unwrap();
        // Written from another thread: a payload larger than the socket buffers must be read
        // back while it is still being sent.
        let writer = {
            let mut c = c.try_clone().unwrap();
            let payload = payload.clone();
            std::thread::spawn(move || {
                c.write_all(&payload).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(back, payload);
        echo.join().unwrap();
    }
}
