//! Tests in real network namespaces (needs root / CAP_SYS_ADMIN + CAP_NET_ADMIN, `ip`, `iptables`).

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use socket2::SockRef;

use super::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop even when the test panics.
struct TestNetns {
    name: String,
    file: File,
}

impl TestNetns {
    fn new() -> Self {
        let name = format!(
            "zt-sock-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        // From here on Drop removes it, even if the next steps fail.
        let file = match File::open(format!("/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                run("ip", &["netns", "del", &name]);
                panic!("open /run/netns/{name}: {e}");
            }
        };
        let ns = Self { name, file };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and asserts it succeeded.
    fn exec(&self, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        run("ip", &args);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn accept_with_timeout(listener: &TcpListener) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok((s, _)) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

#[test]
fn listener_created_in_netns_lives_there_and_not_in_root() {
    let ns = TestNetns::new();
    let listener = in_netns(ns.file.as_fd(), || {
        ListenerBuilder::new(loopback_any_port())
            .mark(ZTUNNEL_MARK)
            .build()
    })
    .expect("listener in netns");
    let port = listener.local_addr().expect("local addr").port();

    let sock = SockRef::from(&listener);
    assert_eq!(sock.mark().expect("SO_MARK"), ZTUNNEL_MARK);
    assert!(sock.reuse_port().expect("SO_REUSEPORT"));
    assert!(sock.reuse_address().expect("SO_REUSEADDR"));
    assert!(sock.nonblocking().expect("O_NONBLOCK"));

    // The root namespace has nothing on that port: an exclusive bind there succeeds.
    let root = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    assert!(
        root.is_ok(),
        "port {port} is taken in the root netns: {root:?}"
    );
    drop(root);

    // From inside the namespace a client reaches our listener.
    let script = format!("echo hello-from-netns > /dev/tcp/127.0.0.1/{port}");
    ns.exec(&["bash", "-c", &script]);
    let mut conn = accept_with_timeout(&listener);
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read");
    assert_eq!(got, "hello-from-netns\n");
}

#[test]
fn in_netns_rejects_a_non_namespace_fd() {
    let not_a_netns = File::open("/dev/null").expect("open /dev/null");
    let res = in_netns(not_a_netns.as_fd(), || Ok::<_, SocketError>(()));
    assert!(
        matches!(res, Err(SocketError::EnterNetns(_))),
        "got {res:?}"
    );
    assert!(matches!(
        PodNetns::open(not_a_netns.as_fd()),
        Err(SocketError::EnterNetns(_))
    ));
}

#[test]
fn in_netns_reports_a_panic() {
    let ns = TestNetns::new();
    let res: Result<(), SocketError> = in_netns(ns.file.as_fd(), || panic!("boom"));
    assert!(matches!(res, Err(SocketError::Panicked)), "got {res:?}");
}

/// A fresh namespace, a worker handle on it, and a loopback listener made inside it (adopted by
/// tokio) with its address.
fn netns_with_listener() -> (TestNetns, PodNetns, tokio::net::TcpListener, SocketAddr) {
    netns_with_listener_on(loopback_any_port())
}

fn netns_with_listener_on(
    addr: SocketAddr,
) -> (TestNetns, PodNetns, tokio::net::TcpListener, SocketAddr) {
    let ns = TestNetns::new();
    let worker = PodNetns::open(ns.file.as_fd()).expect("worker");
    let listener = worker
        .run(move || ListenerBuilder::new(addr).build())
        .expect("listener");
    let target = listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(listener).expect("adopt listener");
    (ns, worker, listener, target)
}

#[tokio::test]
async fn pod_netns_socket_is_marked_and_connects_inside_netns() {
    let home = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("own netns")
        .ino();
    let (_ns, worker, listener, target) = netns_with_listener();
    // The worker made it inside the netns: the root netns has that port free.
    drop(TcpListener::bind(target).expect("port free in the root netns"));

    let socket = worker
        .run(move || ConnectBuilder::new(target).build())
        .expect("socket");
    assert_eq!(socket.mark().expect("SO_MARK"), ZTUNNEL_MARK);
    assert!(socket.tcp_nodelay().expect("TCP_NODELAY"));
    assert!(socket.nonblocking().expect("O_NONBLOCK"));

    let stream = into_tokio_socket(socket)
        .connect(target)
        .await
        .expect("connect inside the netns");
    let (accepted, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer, stream.local_addr().expect("local"));
    assert_eq!(accepted.peer_addr().expect("peer"), peer);

    // A panic inside the worker is reported and the worker keeps serving.
    let res: Result<(), SocketError> = worker.run(|| panic!("boom"));
    assert!(matches!(res, Err(SocketError::Panicked)), "got {res:?}");
    let again = worker.run(move || ConnectBuilder::new(target).mark(None).build());
    assert_eq!(again.expect("socket").mark().expect("mark"), 0);
    // Every run, the panicking one too, left this thread in its own namespace.
    let now = std::fs::metadata("/proc/thread-self/ns/net")
        .expect("own netns")
        .ino();
    assert_eq!(
        now, home,
        "the thread must be back in its own network namespace"
    );
}

/// Connects to `dialled` inside `ns`, where a nat OUTPUT rule redirects it to `listener`, and
/// returns what `original_dst` says about the accepted connection.
async fn redirected_original_dst(
    ns: &TestNetns,
    listener: std::net::TcpListener,
    dialled: SocketAddr,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::from_std(listener).expect("adopt");
    let socket = in_netns(ns.file.as_fd(), || {
        ConnectBuilder::new(dialled).mark(None).build()
    })
    .expect("socket");
    let client = tokio::spawn(into_tokio_socket(socket).connect(dialled));
    let (accepted, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("redirected connection within 5s")
        .expect("accept");
    client.await.expect("join").expect("connect");
    original_dst(&accepted).expect("original dst")
}

#[tokio::test]
async fn original_dst_ipv4_after_redirect() {
    let ns = TestNetns::new();
    ns.exec(&["ip", "addr", "add", "10.255.77.1/32", "dev", "lo"]);
    let listener = in_netns(ns.file.as_fd(), || {
        ListenerBuilder::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).build()
    })
    .expect("listener");
    let port = listener.local_addr().expect("addr").port().to_string();
    ns.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "10.255.77.1",
        "--dport",
        "8080",
        "-j",
        "REDIRECT",
        "--to-ports",
        &port,
    ]);
    let dialled: SocketAddr = "10.255.77.1:8080".parse().expect("addr");
    assert_eq!(
        redirected_original_dst(&ns, listener, dialled).await,
        dialled
    );
}

#[tokio::test]
async fn original_dst_ipv6_after_redirect() {
    let ns = TestNetns::new();
    ns.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:77::1/128",
        "dev",
        "lo",
        "nodad",
    ]);
    let listener = in_netns(ns.file.as_fd(), || {
        ListenerBuilder::new("[::]:0".parse().expect("addr")).build()
    })
    .expect("listener");
    let port = listener.local_addr().expect("addr").port().to_string();
    ns.exec(&[
        "ip6tables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "fd00:77::1",
        "--dport",
        "8080",
        "-j",
        "REDIRECT",
        "--to-ports",
        &port,
    ]);
    let dialled: SocketAddr = "[fd00:77::1]:8080".parse().expect("addr");
    assert_eq!(
        redirected_original_dst(&ns, listener, dialled).await,
        dialled
    );
}

#[test]
fn socket_error_converts_to_io_error_keeping_kind() {
    let err = SocketError::Bind {
        addr: loopback_any_port(),
        err: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    };
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
    assert!(io.to_string().contains("cannot bind 127.0.0.1:0"), "{io}");
}

/// The kernel's default congestion control as a new socket gets it.
fn kernel_default_congestion() -> String {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("s");
    Congestion::of(&s).expect("TCP_CONGESTION")
}

#[tokio::test]
async fn tunnel_sockets_get_the_chosen_congestion_control_and_others_keep_the_default() {
    // Reno is built into every kernel, always allowed, and nobody's default.
    let reno = "reno"
        .parse::<CongestionChoice>()
        .expect("reno")
        .algorithm()
        .cloned();
    let default = kernel_default_congestion();
    assert_ne!(default, "reno", "this test needs a default other than reno");

    for (cc, want) in [(reno.clone(), "reno".to_string()), (None, default.clone())] {
        let listener = ListenerBuilder::new(loopback_any_port())
            .congestion(cc.clone())
            .build()
            .expect("listener");
        let target = listener.local_addr().expect("addr");
        let socket = ConnectBuilder::new(target)
            .mark(None)
            .congestion(cc.clone())
            .build()
            .expect("socket");
        assert_eq!(Congestion::of(&socket).expect("client"), want, "{cc:?}");
        let stream = into_tokio_socket(socket)
            .connect(target)
            .await
            .expect("connect");
        // Accepted sockets inherit the listener's algorithm.
        let accepted = accept_with_timeout(&listener);
        assert_eq!(
            Congestion::of(&SockRef::from(&accepted)).expect("accepted"),
            want,
            "{cc:?}"
        );
        assert_eq!(
            Congestion::of(&SockRef::from(&stream)).expect("connected"),
            want
        );
    }
}

/// A socket with a transparent source is bound to that address without a port (the port comes at
/// connect time, against the whole 4-tuple) and the peer sees that address.
#[tokio::test]
async fn transparent_source_binds_the_address_and_leaves_the_port_to_connect() {
    check_transparent_source(loopback_any_port(), "127.0.0.2:0", None).await;
}

/// The same over IPv6. `fd00::5` is no address of the namespace, so binding it takes
/// IPV6_TRANSPARENT; the local route brings the SYN-ACK back to it (what the pod's
/// `fwmark 0x111` rule does for the replies to a client's address).
#[tokio::test]
async fn transparent_ipv6_source_binds_the_address_and_the_peer_sees_it() {
    let route = [
        "ip",
        "-6",
        "route",
        "add",
        "local",
        "fd00::/64",
        "dev",
        "lo",
    ];
    check_transparent_source("[::1]:0".parse().expect("::1"), "[fd00::5]:0", Some(&route)).await;
}

async fn check_transparent_source(listen: SocketAddr, source: &str, setup: Option<&[&str]>) {
    let (ns, worker, listener, target) = netns_with_listener_on(listen);
    if let Some(cmd) = setup {
        ns.exec(cmd);
    }
    let source: SocketAddr = source.parse().expect("source");
    let socket = worker
        .run(move || {
            ConnectBuilder::new(target)
                .transparent_source(source)
                .build()
        })
        .expect("socket");
    let transparent = if source.is_ipv4() {
        socket.ip_transparent_v4()
    } else {
        socket.ip_transparent_v6()
    };
    assert!(transparent.expect("IP(V6)_TRANSPARENT"));
    assert!(
        nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort)
            .expect("IP_BIND_ADDRESS_NO_PORT")
    );
    let bound = socket
        .local_addr()
        .expect("bound")
        .as_socket()
        .expect("inet");
    assert_eq!(bound, source, "address bound, no port taken yet");
    let stream = into_tokio_socket(socket)
        .connect(target)
        .await
        .expect("connect");
    let (_accepted, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer.ip(), source.ip());
    assert_eq!(peer, stream.local_addr().expect("local"));
    assert_ne!(peer.port(), 0);
}

/// Accepted sockets (ztunnel's end of an app's captured connection) send small writes at once:
/// a proxy must not add Nagle's delay to what it relays, whatever the app chose for its own
/// socket.
#[test]
fn accepted_sockets_have_nagle_off() {
    let listener = ListenerBuilder::new(loopback_any_port())
        .build()
        .expect("listener");
    let target = listener.local_addr().expect("addr");
    let _client = std::net::TcpStream::connect(target).expect("connect");
    let accepted = accept_with_timeout(&listener);
    assert!(accepted.nodelay().expect("TCP_NODELAY"), "Nagle is on");
}
