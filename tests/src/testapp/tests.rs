//! Loopback tests of the test application (tier 2: no namespaces needed).

use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use super::*;

fn start(banner: Option<&str>) -> SocketAddr {
    let opts = ServeOptions {
        bind: "127.0.0.1".parse().expect("ip"),
        port: 0,
        banner: banner.map(str::to_owned),
    };
    let server = Server::bind(&opts).expect("binds");
    let addr = server.local_addr().expect("addr");
    thread::spawn(move || server.run());
    addr
}

fn opts(to: SocketAddr, data: &[u8], timeout_ms: u64) -> SendOptions {
    SendOptions {
        to,
        data: data.to_vec(),
        timeout: Duration::from_millis(timeout_ms),
    }
}

#[test]
fn echoes_large_payloads_on_concurrent_connections() {
    let addr = start(None);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let o = opts(addr, &data, 10_000);
            thread::spawn(move || send(&o))
        })
        .collect();
    for c in clients {
        let reply = c.join().expect("client thread").expect("exchange succeeds");
        assert_eq!(reply, data);
    }
}

#[test]
fn banner_comes_first() {
    let addr = start(Some("pod-a"));
    let reply = send(&opts(addr, b"xyz", 5000)).expect("exchange succeeds");
    assert_eq!(reply, b"hello from pod-a\nxyz");
}

#[test]
fn refused_connection_is_classified() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let err =
        send(&opts(SocketAddr::from(([127, 0, 0, 1], port)), b"x", 2000)).expect_err("refused");
    assert!(matches!(err, SendError::Refused { .. }), "{err}");
    assert_eq!(err.exit_code(), 3);
}

#[test]
fn silent_server_times_out() {
    // Accepted by the kernel backlog, never answered.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let started = std::time::Instant::now();
    let err = send(&opts(listener.local_addr().expect("addr"), b"x", 300)).expect_err("times out");
    assert!(matches!(err, SendError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn reset_is_classified() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger)
            .expect("linger");
        thread::sleep(Duration::from_millis(100));
        drop(stream); // RST
    });
    let err = send(&opts(addr, b"x", 5000)).expect_err("reset");
    assert!(matches!(err, SendError::Reset { .. }), "{err}");
}

#[test]
fn connrate_counts_completed_exchanges() {
    let addr = start(None);
    let report = connrate(&ConnRateOptions {
        to: addr,
        duration: Duration::from_millis(300),
        concurrency: 2,
        timeout: Duration::from_secs(2),
    });
    assert!(report.connections > 10, "{report:?}");
    assert_eq!(report.errors, 0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
    assert_eq!(json["connections"], report.connections);
}

#[test]
fn connrate_counts_failures() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let report = connrate(&ConnRateOptions {
        to: SocketAddr::from(([127, 0, 0, 1], port)),
        duration: Duration::from_millis(100),
        concurrency: 1,
        timeout: Duration::from_secs(1),
    });
    assert_eq!(report.connections, 0);
    assert!(report.errors > 0);
}

#[test]
fn cli_rejects_bad_arguments() {
    let code = cli::main_from(["mesh-testapp", "send", "--to", "not-an-addr", "--data", "x"]);
    assert_eq!(code, std::process::ExitCode::from(2));
}

fn bulk_opts(to: SocketAddr, bytes: u64) -> BulkOptions {
    BulkOptions {
        to,
        bytes,
        timeout: Duration::from_secs(20),
    }
}

/// An echo server that passes `keep` bytes back (the byte at `flip`, if any, changed) and then
/// closes its side.
fn start_faulty_echo(keep: u64, flip: Option<u64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        loop {
            let n = match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for (k, b) in buf[..n].iter_mut().enumerate() {
                if Some(at + k as u64) == flip {
                    *b ^= 0xff;
                }
            }
            let back = usize::try_from(keep.saturating_sub(at))
                .unwrap_or(usize::MAX)
                .min(n);
            if std::io::Write::write_all(&mut s, &buf[..back]).is_err() {
                break;
            }
            at += n as u64;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    addr
}

#[test]
fn bulk_streams_and_checks_every_byte() {
    let addr = start(None);
    bulk(&bulk_opts(addr, 24 << 20)).expect("24 MiB echoed intact");
}

#[test]
fn bulk_reports_a_changed_byte_and_where() {
    let addr = start_faulty_echo(u64::MAX, Some(1_000_003));
    let err = bulk(&bulk_opts(addr, 4 << 20)).expect_err("corruption found");
    assert!(
        matches!(
            err,
            BulkError::Corrupt {
                offset: 1_000_003,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bulk_reports_a_short_echo() {
    let addr = start_faulty_echo(3 << 20, None);
    let err = bulk(&bulk_opts(addr, 4 << 20)).expect_err("echo cut short");
    assert!(
        matches!(err, BulkError::Length { got, sent } if got == 3 << 20 && sent == 4 << 20),
        "{err}"
    );
}
